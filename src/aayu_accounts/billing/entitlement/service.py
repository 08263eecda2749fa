"""Entitlement checks for the scribe backend: may this user of this clinic use this feature?

Contract (called by api_security's signed endpoint ``POST /api/v1/service/entitlements/check``):
``await check_entitlement(session, org_id=, user_id=, feature=)`` returns an
:class:`EntitlementDecision`; it never raises for an expected "no". Reasons:

* ``not_a_member``: the user is not an active member of the org;
* ``no_subscription``: none, or canceled / incomplete_expired;
* ``subscription_incomplete``: the first payment still needs the customer's action;
* ``feature_not_in_plan``;
* ``past_due_grace_over``: past_due longer than the grace period, or unpaid (dunning restricts);
* ``seat_limit``: a clinician beyond the paid seats (the newest clinicians lose the seat);
* ``quota_exhausted``: the period's notes are used up (``remaining`` 0).

``sign_in`` and ``data_export`` are always allowed: restriction never locks a clinic out of
its own data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing import runtime
from aayu_accounts.billing.entitlement.cache import OrgSnapshot, current
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.subscription.repository import SEATED_ROLES
from aayu_accounts.billing.usage import repository as usage
from aayu_accounts.kit import clock

ALWAYS_ALLOWED = frozenset({"sign_in", "data_export"})
NO_ACCESS_STATUSES = frozenset({"canceled", "incomplete_expired"})
METERED_FEATURES = {"notes": "notes"}


@dataclass(frozen=True)
class EntitlementDecision:
    allowed: bool
    reason: str | None = None
    remaining: int | None = None


def months_in(interval: str) -> int:
    return 12 if interval == "year" else 1


async def load_snapshot(session: AsyncSession, org_id: str) -> OrgSnapshot:
    members = dict(await subscriptions.active_members(session, org_id))
    seated_order = [uid for uid, role in members.items() if role in SEATED_ROLES]
    sub = await subscriptions.for_org(session, org_id)
    if sub is None:
        return OrgSnapshot(
            org_id=org_id,
            status=None,
            plan_id=None,
            features=frozenset(),
            seats=0,
            period_start=None,
            period_end=None,
            past_due_since=None,
            notes_included=0,
            notes_used=0,
            members=members,
            seated=frozenset(),
        )
    plan = await plans.get(session, sub.plan_id)
    assert plan is not None  # foreign key
    included = plan.notes_per_seat * sub.seats * months_in(plan.interval)
    used = await usage.used(
        session, org_id, "notes", sub.current_period_start, sub.current_period_end
    )
    return OrgSnapshot(
        org_id=org_id,
        status=sub.status,
        plan_id=plan.id,
        features=frozenset(plan.features),
        seats=sub.seats,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
        past_due_since=sub.past_due_since,
        notes_included=included,
        notes_used=used,
        members=members,
        seated=frozenset(seated_order[: sub.seats]),
    )


async def snapshot_for(session: AsyncSession, org_id: str) -> OrgSnapshot:
    entitlements = current()
    found = entitlements.get(org_id, runtime.current().cache_seconds)
    if found is None:
        loaded_at = entitlements.generation
        found = await load_snapshot(session, org_id)
        entitlements.put(found, loaded_at=loaded_at)
    return found


def grace_over(past_due_since: datetime | None, now: datetime) -> bool:
    return past_due_since is not None and now >= past_due_since + runtime.current().grace


def decide(snapshot: OrgSnapshot, user_id: str, feature: str, now: datetime) -> EntitlementDecision:
    if feature in ALWAYS_ALLOWED:
        return EntitlementDecision(True)
    role = snapshot.members.get(user_id)
    if role is None:
        return EntitlementDecision(False, "not_a_member")
    status = snapshot.status
    if status is None or status in NO_ACCESS_STATUSES:
        return EntitlementDecision(False, "no_subscription")
    if status == "incomplete":
        return EntitlementDecision(False, "subscription_incomplete")
    if feature not in snapshot.features:
        return EntitlementDecision(False, "feature_not_in_plan")
    if status == "unpaid" or (status == "past_due" and grace_over(snapshot.past_due_since, now)):
        return EntitlementDecision(False, "past_due_grace_over")
    if role in SEATED_ROLES and user_id not in snapshot.seated:
        return EntitlementDecision(False, "seat_limit")
    metric = METERED_FEATURES.get(feature)
    if metric is None:
        return EntitlementDecision(True)
    remaining = max(0, snapshot.notes_included - snapshot.notes_used)
    if remaining <= 0:
        return EntitlementDecision(False, "quota_exhausted", 0)
    return EntitlementDecision(True, None, remaining)


async def check_entitlement(
    session: AsyncSession, *, org_id: str, user_id: str, feature: str
) -> EntitlementDecision:
    """Whether ``user_id`` of ``org_id`` may use ``feature`` now; see the module docstring."""
    snapshot = await snapshot_for(session, org_id)
    return decide(snapshot, user_id, feature, clock.now())


def invalidate(org_id: str) -> None:
    """Drop ``org_id``'s snapshot in this instance only (see :func:`invalidate_on_commit`)."""
    current().invalidate(org_id)


def invalidate_on_commit(session: AsyncSession, org_id: str) -> None:
    """Drop ``org_id``'s snapshot now and, once ``session`` commits, on every instance."""
    current().mark(session, org_id)
