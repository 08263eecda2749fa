"""Plans: seeding from the catalog and reading them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.plan import repository
from aayu_accounts.billing.plan.catalog import PlanConfig
from aayu_accounts.models.plan import Plan

_FIELDS = (
    "name",
    "interval",
    "amount_cents",
    "currency",
    "per_seat",
    "trial_days",
    "notes_per_seat",
    "max_seats",
    "features",
)


async def seed_plans(session: AsyncSession, catalog: Sequence[PlanConfig]) -> list[str]:
    """Insert or update every catalog plan, deactivate the others; returns changed plan ids.

    Idempotent: seeding the same catalog twice changes nothing. A Stripe price id already
    stored (created by the Stripe provider) is kept unless the catalog names one.
    """
    existing = {plan.id: plan for plan in await repository.list_all(session)}
    changed: list[str] = []
    for config in catalog:
        plan = existing.pop(config.id, None)
        if plan is None:
            plan = Plan(id=config.id, active=True, stripe_price_id=config.stripe_price_id)
            for name in _FIELDS:
                setattr(plan, name, getattr(config, name))
            session.add(plan)
            changed.append(config.id)
            continue
        dirty = False
        for name in _FIELDS:
            value = getattr(config, name)
            if getattr(plan, name) != value:
                setattr(plan, name, list(value) if isinstance(value, list) else value)
                dirty = True
        if config.stripe_price_id and plan.stripe_price_id != config.stripe_price_id:
            plan.stripe_price_id = config.stripe_price_id
            dirty = True
        if not plan.active:
            plan.active = True
            dirty = True
        if dirty:
            changed.append(config.id)
    for plan in existing.values():
        if plan.active:
            plan.active = False
            changed.append(plan.id)
    await session.flush()
    return changed


async def list_plans(session: AsyncSession) -> Sequence[Plan]:
    return await repository.list_active(session)


async def get_plan(session: AsyncSession, plan_id: str) -> Plan | None:
    return await repository.get(session, plan_id)
