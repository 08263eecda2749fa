"""Usage recording (notes written) and the used-versus-included view.

Contract (called by api_security's signed endpoint ``POST /api/v1/service/usage``):
``await record_usage(session, event_id=, org_id=, user_id=, metric=, quantity=, occurred_at=)``
returns True when this call recorded the event and False when the ``event_id`` was already
recorded (a redelivery: the caller answers 202 either way). The claim and the write are one
insert in the caller's transaction, so concurrent deliveries of one id count once.
Raises :class:`UnknownMetric` (422) and :class:`UnknownOrganization` (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.entitlement.cache import current as entitlement_cache
from aayu_accounts.billing.entitlement.service import months_in
from aayu_accounts.billing.errors import NoSubscription, UnknownOrganization
from aayu_accounts.billing.hooks import after_commit
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.usage import repository
from aayu_accounts.errors import AppError
from aayu_accounts.kit import clock

METRICS = frozenset({"notes"})


class UnknownMetric(AppError):
    status = 422
    code = "unknown_metric"
    title = "Unknown usage metric"


class InvalidQuantity(AppError):
    status = 422
    code = "invalid_quantity"
    title = "Quantity must be a positive integer"


async def record_usage(
    session: AsyncSession,
    *,
    event_id: str,
    org_id: str,
    user_id: str,
    metric: str,
    quantity: int,
    occurred_at: datetime,
) -> bool:
    if metric not in METRICS:
        raise UnknownMetric(f"Known metrics: {', '.join(sorted(METRICS))}.")
    if quantity < 1:
        raise InvalidQuantity()
    if occurred_at.tzinfo is None:
        raise AppError("occurred_at needs a time zone")
    if not await subscriptions.org_exists(session, org_id):
        raise UnknownOrganization()
    stored = await repository.claim(
        session,
        {
            "event_id": event_id,
            "org_id": org_id,
            "user_id": user_id,
            "metric": metric,
            "quantity": quantity,
            "occurred_at": occurred_at,
            "recorded_at": clock.now(),
        },
    )
    if stored:
        counter = entitlement_cache()
        after_commit(session, lambda: counter.add_usage(org_id, metric, quantity, occurred_at))
    return stored


@dataclass(frozen=True)
class MetricUsage:
    used: int
    included: int


@dataclass(frozen=True)
class UsageSummary:
    period_start: datetime
    period_end: datetime
    metrics: dict[str, MetricUsage]


async def usage_summary(session: AsyncSession, org_id: str) -> UsageSummary:
    """Used versus included in the current period. Raises :class:`NoSubscription`."""
    sub = await subscriptions.for_org(session, org_id)
    if sub is None:
        raise NoSubscription()
    plan = await plans.get(session, sub.plan_id)
    assert plan is not None
    used = await repository.used(
        session, org_id, "notes", sub.current_period_start, sub.current_period_end
    )
    included = plan.notes_per_seat * sub.seats * months_in(plan.interval)
    return UsageSummary(
        sub.current_period_start,
        sub.current_period_end,
        {"notes": MetricUsage(used=used, included=included)},
    )
