"""A cache in front of a (remote) secret store.

Fresh for ``ttl`` (5 minutes by default). When the provider is down past that, the cached
value is served for at most ``stale_for`` more, with a high-severity alert each time (a
``secret_store.serving_stale`` log event and ``aayu_alerts_total{severity="high"}``), so an
outage of the vault does not take the service down with it, yet cannot go unnoticed. Values
are never logged; names are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import structlog

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretStore,
    SecretStoreUnavailable,
    SecretVersion,
)
from aayu_accounts.kit import clock
from aayu_accounts.observability.metrics import ALERTS

log = structlog.get_logger(__name__)

T = TypeVar("T")

STALE_ALERT = "secret_store_stale"


@dataclass
class _Entry(Generic[T]):
    value: T = field(repr=False)
    fetched_at: datetime


class CachedSecretStore(SecretStore):
    def __init__(self, inner: SecretStore, *, ttl: timedelta, stale_for: timedelta) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.remote = inner.remote
        self.ttl = ttl
        self.stale_for = stale_for
        self._secrets: dict[tuple[str, str | None], _Entry[Secret]] = {}
        self._versions: dict[str, _Entry[list[SecretVersion]]] = {}

    def _usable(self, entry: _Entry[T] | None, now: datetime, limit: timedelta) -> bool:
        return entry is not None and now - entry.fetched_at < limit

    def _serve_stale(self, item: str, entry: _Entry[T], now: datetime) -> T:
        age = (now - entry.fetched_at).total_seconds()
        ALERTS.labels("high", STALE_ALERT).inc()
        log.critical(
            "secret_store.serving_stale",
            alert=STALE_ALERT,
            severity="high",
            provider=self.provider,
            item=item,
            age_s=round(age, 1),
        )
        return entry.value

    async def get(self, name: str, version: str | None = None) -> Secret:
        key = (name, version)
        entry = self._secrets.get(key)
        now = clock.now()
        if entry is not None and self._usable(entry, now, self.ttl):
            return entry.value
        try:
            secret = await self.inner.get(name, version)
        except SecretStoreUnavailable:
            if entry is not None and self._usable(entry, now, self.ttl + self.stale_for):
                return self._serve_stale(name, entry, now)
            raise
        self._secrets[key] = _Entry(secret, now)
        return secret

    async def list_versions(self, name: str) -> list[SecretVersion]:
        entry = self._versions.get(name)
        now = clock.now()
        if entry is not None and self._usable(entry, now, self.ttl):
            return list(entry.value)
        try:
            versions = await self.inner.list_versions(name)
        except SecretStoreUnavailable:
            if entry is not None and self._usable(entry, now, self.ttl + self.stale_for):
                stale: list[SecretVersion] = self._serve_stale(name, entry, now)
                return list(stale)
            raise
        self._versions[name] = _Entry(list(versions), now)
        return versions

    async def set(self, name: str, value: str) -> Secret:
        secret = await self.inner.set(name, value)
        self.invalidate(name)
        return secret

    def invalidate(self, name: str) -> None:
        for key in [k for k in self._secrets if k[0] == name]:
            del self._secrets[key]
        self._versions.pop(name, None)

    async def close(self) -> None:
        await self.inner.close()
