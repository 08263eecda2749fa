"""Queries on incidents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.incident import Incident


async def get(session: AsyncSession, incident_id: str) -> Incident | None:
    return await session.get(Incident, incident_id)


async def latest(session: AsyncSession, limit: int) -> Sequence[Incident]:
    return (
        await session.scalars(
            select(Incident).order_by(Incident.created_at.desc(), Incident.id).limit(limit)
        )
    ).all()


async def last_rollback_at(session: AsyncSession) -> datetime | None:
    """When the most recent rollback (manual or automatic) happened, if ever."""
    moment: datetime | None = await session.scalar(select(func.max(Incident.created_at)))
    return moment
