"""Proration: what a change costs for the rest of the current period (Stripe's method).

Stripe prorates by the exact time left: the new price minus the old price, times the unused
fraction of the period, rounded to the minor unit. A change of billing interval starts a new
period now: the full new price, less the unused part of the old one as a credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ProrationLine:
    description: str
    amount_cents: int


@dataclass(frozen=True)
class ChangePreview:
    currency: str
    lines: tuple[ProrationLine, ...]
    amount_due_now_cents: int
    next_invoice_cents: int
    period_end: datetime
    resets_period: bool


def unused_fraction(start: datetime, end: datetime, now: datetime) -> float:
    total = (end - start).total_seconds()
    if total <= 0:
        return 0.0
    left = (end - max(now, start)).total_seconds()
    return min(1.0, max(0.0, left / total))


def preview_change(
    *,
    currency: str,
    old_total_cents: int,
    new_total_cents: int,
    old_label: str,
    new_label: str,
    period_start: datetime,
    period_end: datetime,
    new_period_end: datetime,
    now: datetime,
    interval_changes: bool,
    trialing: bool,
) -> ChangePreview:
    if trialing:
        # Stripe does not prorate during a trial: the new price applies when it ends.
        return ChangePreview(currency, (), 0, new_total_cents, period_end, False)
    fraction = unused_fraction(period_start, period_end, now)
    credit = -round(old_total_cents * fraction)
    if interval_changes:
        lines = (
            ProrationLine(f"Unused time on {old_label}", credit),
            ProrationLine(f"{new_label}, new period from now", new_total_cents),
        )
        due = max(0, credit + new_total_cents)
        return ChangePreview(currency, lines, due, new_total_cents, new_period_end, True)
    charge = round(new_total_cents * fraction)
    lines = (
        ProrationLine(f"Unused time on {old_label}", credit),
        ProrationLine(f"Remaining time on {new_label}", charge),
    )
    return ChangePreview(currency, lines, credit + charge, new_total_cents, period_end, False)
