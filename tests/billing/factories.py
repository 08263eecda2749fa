"""Rows billing tests need: a clinic with members, plans from the catalog."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.plan.catalog import DEFAULT_PLANS, PlanConfig
from aayu_accounts.billing.plan.service import seed_plans
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.user import User


@dataclass
class Clinic:
    org_id: str
    owner_id: str
    members: dict[str, str] = field(default_factory=dict)  # user_id -> role


def no_trial_catalog() -> list[PlanConfig]:
    return [plan.model_copy(update={"trial_days": 0}) for plan in DEFAULT_PLANS]


async def seed_default_plans(session: AsyncSession, *, trials: bool = False) -> None:
    await seed_plans(session, list(DEFAULT_PLANS) if trials else no_trial_catalog())


async def add_user(session: AsyncSession, email: str | None = None) -> str:
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.org",
        full_name="Test Person",
        password_hash="not-a-real-hash",
        email_verified_at=None,
    )
    session.add(user)
    await session.flush()
    return user.id


async def add_member(
    session: AsyncSession, clinic: Clinic, role: str, *, active: bool = True
) -> str:
    user_id = await add_user(session)
    session.add(Membership(org_id=clinic.org_id, user_id=user_id, role=role, active=active))
    await session.flush()
    clinic.members[user_id] = role
    return user_id


async def make_clinic(session: AsyncSession, *, clinicians: int = 1) -> Clinic:
    org = Organization(name="Test Clinic")
    session.add(org)
    await session.flush()
    clinic = Clinic(org_id=org.id, owner_id="")
    clinic.owner_id = await add_member(session, clinic, "owner")
    for _ in range(clinicians):
        await add_member(session, clinic, "clinician")
    return clinic
