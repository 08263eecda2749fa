"""Revenue numbers for ``aayu-accounts billing report`` and the metrics.

Definitions (stated so the numbers can be checked):

* MRR, Stripe's definition: subscriptions ``active`` or ``past_due`` (not trialing, not
  canceled), each normalized to a month (an annual price / 12), per currency, minor units.
* ARR: 12 x MRR.
* Subscriptions by plan: every non-terminal status, counted per plan and status.
* Seats: paid seats on active and past_due subscriptions.
* Trial conversion: of the subscriptions whose trial has ended, the share that became
  ``active`` after it (``converted_from_trial_at`` set).
* Churn (30 days): subscriptions canceled in the last 30 days over those paying at the start
  of the window (paying now + canceled in the window).
* Billing failure rate: of the invoices with an amount due created in the last 30 days, the
  share still unpaid (``open`` or ``uncollectible``) — the strategy alerts at 5 %, pages at 10 %.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.invoice import repository as invoices
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.subscription.service import monthly_of
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics

PAYING = frozenset({"active", "past_due"})
WINDOW = timedelta(days=30)


@dataclass
class RevenueReport:
    generated_at: str
    mrr_cents: dict[str, int] = field(default_factory=dict)
    arr_cents: dict[str, int] = field(default_factory=dict)
    subscriptions_by_plan: dict[str, dict[str, int]] = field(default_factory=dict)
    paying_subscriptions: int = 0
    seats: int = 0
    trial_conversion: float | None = None
    trials_ended: int = 0
    churn_30d: float | None = None
    canceled_30d: int = 0
    billing_failure_rate: float | None = None
    invoices_30d: int = 0
    failed_invoices_30d: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def build_report(session: AsyncSession, now: datetime | None = None) -> RevenueReport:
    now = now or clock.now()
    since = now - WINDOW
    plan_by_id = {plan.id: plan for plan in await plans.list_all(session)}
    report = RevenueReport(generated_at=now.isoformat())
    mrr: Counter[str] = Counter()
    by_plan: dict[str, Counter[str]] = defaultdict(Counter)
    trials_ended = converted = canceled = 0
    for sub in await subscriptions.all_subscriptions(session):
        plan = plan_by_id.get(sub.plan_id)
        if plan is None:
            continue
        if sub.status in PAYING:
            mrr[plan.currency] += monthly_of(plan, sub.seats)
            report.paying_subscriptions += 1
            report.seats += sub.seats
        if sub.status not in ("canceled", "incomplete_expired"):
            by_plan[plan.id][sub.status] += 1
        if sub.trial_end is not None and sub.trial_end <= now:
            trials_ended += 1
            converted += sub.converted_from_trial_at is not None
        if sub.status == "canceled" and sub.canceled_at is not None and sub.canceled_at >= since:
            canceled += 1
    report.mrr_cents = dict(mrr)
    report.arr_cents = {currency: cents * 12 for currency, cents in mrr.items()}
    report.subscriptions_by_plan = {plan: dict(counts) for plan, counts in by_plan.items()}
    report.trials_ended = trials_ended
    report.trial_conversion = _ratio(converted, trials_ended)
    report.canceled_30d = canceled
    report.churn_30d = _ratio(canceled, report.paying_subscriptions + canceled)
    charged = [
        invoice
        for invoice in await invoices.all_invoices(session)
        if invoice.created_at >= since and invoice.amount_cents > 0
    ]
    failed = sum(1 for invoice in charged if invoice.status in ("open", "uncollectible"))
    report.invoices_30d = len(charged)
    report.failed_invoices_30d = failed
    report.billing_failure_rate = _ratio(failed, len(charged))
    return report


def export_metrics(report: RevenueReport) -> None:
    for currency in report.mrr_cents or {"usd": 0}:
        metrics.BILLING_MRR.labels(currency).set(report.mrr_cents.get(currency, 0))
        metrics.BILLING_ARR.labels(currency).set(report.arr_cents.get(currency, 0))
    for plan, counts in report.subscriptions_by_plan.items():
        for status, count in counts.items():
            metrics.BILLING_SUBSCRIPTIONS.labels(plan, status).set(count)
    metrics.BILLING_SEATS.set(report.seats)
    metrics.BILLING_TRIAL_CONVERSION.set(report.trial_conversion or 0.0)
    metrics.BILLING_CHURN_30D.set(report.churn_30d or 0.0)
    metrics.BILLING_FAILURE_RATE.set(report.billing_failure_rate or 0.0)


def metrics_refresher(
    db: Database, min_interval_seconds: float = 60.0
) -> Callable[[], Awaitable[None]]:
    """Recompute the revenue gauges on a scrape, at most once a minute: the report reads every
    subscription and recent invoice, and revenue does not move by the second."""
    last: list[float] = []

    async def refresh() -> None:
        if last and clock.monotonic() - last[0] < min_interval_seconds:
            return
        async with db.session_scope(write=False) as session:
            export_metrics(await build_report(session))
        last[:] = [clock.monotonic()]

    return refresh
