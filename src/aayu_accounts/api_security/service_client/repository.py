"""Every query on service clients and their secrets (parameterized, as all queries are)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.service_client import ServiceClient
from aayu_accounts.models.service_client_secret import ServiceClientSecret


async def add(session: AsyncSession, client: ServiceClient) -> ServiceClient:
    session.add(client)
    await session.flush()
    return client


async def add_secret(session: AsyncSession, secret: ServiceClientSecret) -> ServiceClientSecret:
    session.add(secret)
    await session.flush()
    return secret


async def by_name(session: AsyncSession, name: str) -> ServiceClient | None:
    found: ServiceClient | None = await session.scalar(
        select(ServiceClient).where(ServiceClient.name == name)
    )
    return found


async def by_key_id(session: AsyncSession, key_id: str) -> ServiceClient | None:
    found: ServiceClient | None = await session.scalar(
        select(ServiceClient).where(ServiceClient.key_id == key_id)
    )
    return found


async def all_clients(session: AsyncSession) -> Sequence[ServiceClient]:
    return (await session.scalars(select(ServiceClient).order_by(ServiceClient.name))).all()


async def live_secrets(
    session: AsyncSession, client_id: str, now: datetime
) -> Sequence[ServiceClientSecret]:
    """Secrets that still verify at ``now``, newest first."""
    query = (
        select(ServiceClientSecret)
        .where(
            ServiceClientSecret.client_id == client_id,
            or_(ServiceClientSecret.expires_at.is_(None), ServiceClientSecret.expires_at > now),
        )
        .order_by(ServiceClientSecret.created_at.desc(), ServiceClientSecret.id)
    )
    return (await session.scalars(query)).all()
