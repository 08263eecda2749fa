"""Queries on clinics."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.organization import Organization


async def get(session: AsyncSession, org_id: str) -> Organization | None:
    return await session.get(Organization, org_id)


async def add(session: AsyncSession, org: Organization) -> Organization:
    session.add(org)
    await session.flush()
    return org
