"""The rollout machinery one process serves requests with (built by ``wiring.install``)."""

from __future__ import annotations

from dataclasses import dataclass

from aayu_accounts.rollout.legacy.credentials import LegacyCredentials
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.path_router import PathRouter


@dataclass
class RolloutContext:
    router: PathRouter
    legacy_credentials: LegacyCredentials
    legacy_store: LegacyDocumentStore
