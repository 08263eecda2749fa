"""Queries on incidents."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
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
