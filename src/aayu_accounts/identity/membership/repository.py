"""Queries on memberships: the one place that scopes clinic data to its members.

``find_active`` is the tenant filter every org-scoped request goes through (DESIGN rule 4).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.membership import Membership
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.user import User


async def find_active(
    session: AsyncSession, org_id: str, user_id: str
) -> tuple[Membership, Organization] | None:
    """The caller's active membership in ``org_id`` with the clinic, or ``None``."""
    row = (
        await session.execute(
            select(Membership, Organization)
            .join(Organization, Organization.id == Membership.org_id)
            .where(Membership.org_id == org_id)
            .where(Membership.user_id == user_id)
            .where(Membership.active.is_(True))
        )
    ).first()
    if row is None:
        return None
    return row[0], row[1]


async def get(
    session: AsyncSession, org_id: str, user_id: str, *, for_update: bool = False
) -> Membership | None:
    query = select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def add(session: AsyncSession, membership: Membership) -> Membership:
    session.add(membership)
    await session.flush()
    return membership


async def members_with_users(
    session: AsyncSession, org_id: str
) -> Sequence[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
        .order_by(Membership.created_at, Membership.id)
    )
    return [(m, u) for m, u in rows.all()]


async def active_owner_count(session: AsyncSession, org_id: str) -> int:
    # Rows are locked first (PostgreSQL): two admins demoting the last two owners at once
    # must not both see "another owner remains".
    owners = select(Membership.id).where(
        Membership.org_id == org_id, Membership.role == "owner", Membership.active.is_(True)
    )
    locked = (await session.scalars(owners.with_for_update())).all()
    return len(locked)


async def memberships_of_user(
    session: AsyncSession, user_id: str, *, active_only: bool = True
) -> Sequence[tuple[Membership, Organization]]:
    query = (
        select(Membership, Organization)
        .join(Organization, Organization.id == Membership.org_id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.name, Organization.id)
    )
    if active_only:
        query = query.where(Membership.active.is_(True))
    return [(m, o) for m, o in (await session.execute(query)).all()]


async def requires_mfa_enrollment(session: AsyncSession, user_id: str) -> bool:
    """Whether any clinic the user is an active member of requires MFA."""
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .join(Organization, Organization.id == Membership.org_id)
        .where(Membership.user_id == user_id)
        .where(Membership.active.is_(True))
        .where(Organization.require_mfa.is_(True))
    )
    return bool(count)


def session_rules_of(
    memberships: Sequence[tuple[Membership, Organization]],
) -> tuple[int | None, bool]:
    """(the strictest idle timeout among these clinics or None, whether any requires MFA):
    what a new session needs to know, from the active memberships its sign-in reads anyway."""
    minutes = [o.idle_timeout_minutes for _, o in memberships if o.idle_timeout_minutes is not None]
    return (min(minutes) if minutes else None), any(o.require_mfa for _, o in memberships)
