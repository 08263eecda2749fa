"""Queries on plans."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.plan import Plan


async def get(session: AsyncSession, plan_id: str) -> Plan | None:
    return await session.get(Plan, plan_id)


async def list_active(session: AsyncSession) -> Sequence[Plan]:
    return (
        await session.scalars(select(Plan).where(Plan.active.is_(True)).order_by(Plan.amount_cents))
    ).all()


async def list_all(session: AsyncSession) -> Sequence[Plan]:
    return (await session.scalars(select(Plan))).all()


async def by_stripe_price(session: AsyncSession, stripe_price_id: str) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.stripe_price_id == stripe_price_id))
