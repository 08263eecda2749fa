"""Billing request and response bodies (API.md *Billing*). Unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PAYMENT_METHOD_PATTERN = r"^pm_[A-Za-z0-9_]{1,120}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class PlanEntitlementsOut(_Out):
    notes_per_seat_per_month: int
    max_seats: int | None
    features: list[str]


class PlanOut(_Out):
    id: str
    name: str
    interval: Literal["month", "year"]
    amount_cents: int
    currency: str
    per_seat: bool
    trial_days: int
    entitlements: PlanEntitlementsOut


class SubscriptionOut(_Out):
    plan_id: str
    status: str
    seats: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    trial_end: datetime | None


class SubscriptionCreateIn(_In):
    plan_id: str = Field(max_length=64)
    seats: int = Field(ge=1, le=10_000)
    payment_method: str | None = Field(default=None, pattern=PAYMENT_METHOD_PATTERN)
    trial: bool = Field(
        default=True, description="Start with the plan's trial (first subscription only)"
    )


class SubscriptionPatchIn(_In):
    seats: int | None = Field(default=None, ge=1, le=10_000)
    plan_id: str | None = Field(default=None, max_length=64)
    cancel_at_period_end: bool | None = None
    payment_method: str | None = Field(
        default=None,
        pattern=PAYMENT_METHOD_PATTERN,
        description="New default payment method; an open invoice is retried with it at once",
    )


class PreviewIn(_In):
    seats: int | None = Field(default=None, ge=1, le=10_000)
    plan_id: str | None = Field(default=None, max_length=64)


class PreviewLineOut(_Out):
    description: str
    amount_cents: int


class PreviewOut(_Out):
    currency: str
    lines: list[PreviewLineOut]
    amount_due_now_cents: int
    next_invoice_cents: int
    period_end: datetime
    resets_period: bool


class SubscriptionChangeOut(SubscriptionOut):
    proration: PreviewOut | None = None


class InvoiceOut(_Out):
    id: str
    status: str
    amount_cents: int
    currency: str
    period_start: datetime
    period_end: datetime
    hosted_url: str | None


class MetricUsageOut(_Out):
    used: int
    included: int


class UsageOut(_Out):
    period_start: datetime
    period_end: datetime
    metrics: dict[str, MetricUsageOut]


class WebhookAckOut(_Out):
    received: bool
    duplicate: bool


class PortalSessionIn(_In):
    return_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where Stripe's portal sends the customer back; on this service's public "
        "URL (default: the clinic's billing page)",
    )


class CheckoutSessionIn(_In):
    mode: Literal["subscription", "setup"] | None = Field(
        default=None,
        description="`subscription` to subscribe, `setup` to add a payment method; default: "
        "subscription when the clinic has no live subscription, else setup",
    )
    plan_id: str | None = Field(default=None, max_length=64)
    seats: int | None = Field(default=None, ge=1, le=10_000)
    trial: bool = Field(
        default=True, description="Start with the plan's trial (first subscription only)"
    )
    success_url: str | None = Field(default=None, max_length=2000)
    cancel_url: str | None = Field(default=None, max_length=2000)


class HostedSessionOut(_Out):
    url: str = Field(description="Stripe's hosted page; send the browser there (303)")
