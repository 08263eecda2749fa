"""Every query of the alerts table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.alert import Alert
from aayu_accounts.models.auth_session import AuthSession


async def by_key(session: AsyncSession, key: str) -> Alert | None:
    return await session.scalar(select(Alert).where(Alert.key == key))


async def pending_in_group(session: AsyncSession, group: str) -> Sequence[Alert]:
    query = (
        select(Alert)
        .where(Alert.group_key == group, Alert.notify_pending.is_(True))
        .order_by(Alert.fired_at)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def firing(session: AsyncSession) -> Sequence[Alert]:
    query = select(Alert).where(Alert.status == "firing").order_by(Alert.fired_at)
    return (await session.scalars(query)).all()


async def recent(session: AsyncSession, limit: int) -> Sequence[Alert]:
    """Firing alerts first, then the others, each group most recently raised first."""
    firing_first = case((Alert.status == "firing", 0), else_=1)
    query = select(Alert).order_by(firing_first, Alert.last_raised_at.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def firing_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Alert.severity, func.count())
        .where(Alert.status == "firing")
        .group_by(Alert.severity)
    )
    return {str(severity): int(count) for severity, count in rows.all()}


async def groups_with_pending(session: AsyncSession) -> Sequence[str]:
    query = select(Alert.group_key).where(Alert.notify_pending.is_(True)).distinct()
    return (await session.scalars(query)).all()


async def active_sessions(session: AsyncSession, now: datetime, idle_seconds: int) -> int:
    """Sessions not revoked, not expired and used within the idle timeout (a gauge the
    rules and the daily summary read; counted here so no request pays for it)."""
    query = select(func.count()).where(
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > now,
        AuthSession.last_seen_at > now - timedelta(seconds=idle_seconds),
    )
    return int(await session.scalar(query) or 0)
