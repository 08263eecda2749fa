"""Queries on the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.outbox_email import OutboxEmail


async def add(session: AsyncSession, email: OutboxEmail) -> OutboxEmail:
    session.add(email)
    await session.flush()
    return email


async def get(session: AsyncSession, email_id: str) -> OutboxEmail | None:
    return await session.get(OutboxEmail, email_id)


async def latest(session: AsyncSession, limit: int = 50) -> Sequence[OutboxEmail]:
    query = select(OutboxEmail).order_by(OutboxEmail.created_at.desc()).limit(limit)
    return (await session.scalars(query)).all()
