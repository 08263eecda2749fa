"""Queries on subscriptions and on the memberships billing counts (seats, recipients)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.membership import Membership
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.subscription import Subscription

# Roles that occupy a paid seat (issue 9: active clinician members may not exceed seats).
SEATED_ROLES = ("clinician",)


async def for_org(session: AsyncSession, org_id: str, *, lock: bool = False) -> Subscription | None:
    query = select(Subscription).where(Subscription.org_id == org_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def by_provider_id(
    session: AsyncSession, provider_subscription_id: str
) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(
            Subscription.provider_subscription_id == provider_subscription_id
        )
    )


async def by_customer_id(session: AsyncSession, customer_id: str) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(Subscription.provider_customer_id == customer_id)
    )


async def org_exists(session: AsyncSession, org_id: str) -> bool:
    found = await session.scalar(select(Organization.id).where(Organization.id == org_id))
    return found is not None


async def active_members(session: AsyncSession, org_id: str) -> Sequence[tuple[str, str]]:
    """(user_id, role) of the active members, oldest membership first (seat order)."""
    rows = await session.execute(
        select(Membership.user_id, Membership.role)
        .where(Membership.org_id == org_id, Membership.active.is_(True))
        .order_by(Membership.created_at, Membership.id)
    )
    return [(user_id, role) for user_id, role in rows.all()]


async def seated_count(session: AsyncSession, org_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.org_id == org_id,
            Membership.active.is_(True),
            Membership.role.in_(SEATED_ROLES),
        )
    )
    return int(count or 0)


async def member_user_ids(session: AsyncSession, org_id: str, roles: Sequence[str]) -> list[str]:
    rows = await session.scalars(
        select(Membership.user_id).where(
            Membership.org_id == org_id, Membership.active.is_(True), Membership.role.in_(roles)
        )
    )
    return list(rows.all())


async def due_for_renewal(session: AsyncSession, now: datetime, provider: str) -> Sequence[str]:
    rows = await session.scalars(
        select(Subscription.id).where(
            Subscription.provider == provider,
            Subscription.current_period_end <= now,
            Subscription.status.in_(("active", "trialing", "past_due")),
        )
    )
    return list(rows.all())


async def in_dunning(session: AsyncSession) -> Sequence[Subscription]:
    return (
        await session.scalars(select(Subscription).where(Subscription.status == "past_due"))
    ).all()


async def all_subscriptions(session: AsyncSession) -> Sequence[Subscription]:
    return (await session.scalars(select(Subscription))).all()
