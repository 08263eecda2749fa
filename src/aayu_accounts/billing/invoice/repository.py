"""Queries on invoices."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.invoice import Invoice


async def by_provider_id(session: AsyncSession, provider_invoice_id: str) -> Invoice | None:
    return await session.scalar(
        select(Invoice).where(Invoice.provider_invoice_id == provider_invoice_id)
    )


async def for_org(session: AsyncSession, org_id: str, limit: int = 100) -> Sequence[Invoice]:
    return (
        await session.scalars(
            select(Invoice)
            .where(Invoice.org_id == org_id)
            .order_by(Invoice.created_at.desc(), Invoice.id)
            .limit(limit)
        )
    ).all()


async def open_for_subscription(session: AsyncSession, subscription_id: str) -> Sequence[Invoice]:
    return (
        await session.scalars(
            select(Invoice).where(
                Invoice.subscription_id == subscription_id, Invoice.status == "open"
            )
        )
    ).all()


async def all_invoices(session: AsyncSession) -> Sequence[Invoice]:
    return (await session.scalars(select(Invoice))).all()
