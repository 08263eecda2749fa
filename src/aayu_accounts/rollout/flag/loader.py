"""Building a snapshot from the database (read-only; no audit, no domain imports)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.feature_flag import FeatureFlag
from aayu_accounts.rollout.flag import repository
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot


def definition_of(flag: FeatureFlag) -> FlagDefinition:
    return FlagDefinition(
        key=flag.key,
        enabled=flag.enabled,
        rollout_percent=flag.rollout_percent,
        allow_user_ids=frozenset(flag.allow_user_ids),
        deny_user_ids=frozenset(flag.deny_user_ids),
        allow_org_ids=frozenset(flag.allow_org_ids),
        deny_org_ids=frozenset(flag.deny_org_ids),
        requires=tuple(flag.requires),
        bucket_group=flag.bucket_group,
    )


async def load_snapshot(session: AsyncSession) -> FlagSnapshot:
    version = await repository.config_version(session)
    flags = await repository.list_flags(session)
    return FlagSnapshot.build(version, (definition_of(f) for f in flags))


async def current_version(session: AsyncSession) -> int:
    return await repository.config_version(session)
