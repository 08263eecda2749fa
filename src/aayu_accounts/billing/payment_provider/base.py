"""The one interface both payment providers implement, in the provider's own terms.

A provider returns :class:`SubscriptionState` (what the provider now holds); the subscription
service writes it to our tables. Every mutating call takes ``op_id``, our own operation id, from
which the Stripe provider derives its idempotency keys, so a retried operation is applied once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PriceSpec:
    """What a provider needs to know of a plan."""

    plan_id: str
    name: str
    amount_cents: int
    currency: str
    interval: str
    per_seat: bool
    stripe_price_id: str | None = None


@dataclass(frozen=True)
class InvoiceState:
    provider_invoice_id: str
    status: str
    billing_reason: str
    amount_cents: int
    currency: str
    period_start: datetime
    period_end: datetime
    hosted_url: str | None = None
    attempt_count: int = 0
    paid_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionState:
    provider_subscription_id: str
    customer_id: str
    status: str
    plan_id: str
    seats: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None
    canceled_at: datetime | None = None
    payment_method: str | None = None
    invoices: tuple[InvoiceState, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DuplicateCancellation:
    """What :meth:`PaymentProvider.cancel_duplicate_subscription` did to a clinic's second
    subscription. ``canceled`` is true when it was (in this call or an earlier attempt of the
    same operation) canceled by us; false when it had already ended for another reason (then
    nothing was done). ``refunded_cents`` is what its latest invoice's payment got back."""

    provider_subscription_id: str
    canceled: bool
    refunded_cents: int = 0
    currency: str = "usd"


class PaymentDeclined(Exception):
    """The card was declined; nothing was created or changed at the provider."""

    def __init__(self, decline_code: str) -> None:
        self.decline_code = decline_code
        super().__init__(decline_code)


class ProviderUnavailableError(Exception):
    """Network error, 5xx or an open circuit: the operation may be retried later."""


class NotSupportedByProvider(Exception):
    """The provider has no such feature (the ``local`` simulation has no hosted pages)."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(feature)


class ProviderRefused(Exception):
    """The provider refused a request for a reason of its own (a 4xx other than a decline,
    e.g. no portal configuration saved); ``code`` is the provider's error code."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


@dataclass(frozen=True)
class CheckoutRequest:
    """A hosted Checkout page for a clinic.

    ``mode="subscription"``: subscribe to ``price`` with ``seats`` (``customer_id`` when the
    clinic already has a Stripe customer, else Checkout creates one); ``mode="setup"``: save a
    payment method for ``customer_id``. ``org_id`` travels in the metadata, so the
    ``checkout.session.completed`` webhook links the result to the clinic.
    """

    org_id: str
    mode: str
    success_url: str
    cancel_url: str
    customer_id: str | None = None
    price: PriceSpec | None = None
    seats: int = 1
    trial_days: int = 0


class PaymentProvider(Protocol):
    name: str

    async def create_subscription(
        self,
        *,
        org_id: str,
        price: PriceSpec,
        seats: int,
        payment_method: str | None,
        trial_days: int,
        now: datetime,
        op_id: str,
    ) -> SubscriptionState: ...

    async def change_subscription(
        self,
        current: SubscriptionState,
        *,
        price: PriceSpec,
        seats: int,
        proration_cents: int,
        now: datetime,
        op_id: str,
    ) -> SubscriptionState: ...

    async def set_cancel_at_period_end(
        self, current: SubscriptionState, *, cancel: bool, op_id: str
    ) -> SubscriptionState: ...

    async def update_payment_method(
        self, current: SubscriptionState, *, payment_method: str, now: datetime, op_id: str
    ) -> SubscriptionState: ...

    async def renew(
        self, current: SubscriptionState, *, price: PriceSpec, now: datetime, op_id: str
    ) -> SubscriptionState: ...

    async def fetch_subscription(
        self, provider_subscription_id: str
    ) -> SubscriptionState | None: ...

    async def cancel_duplicate_subscription(
        self, provider_subscription_id: str, *, keep_subscription_id: str, op_id: str
    ) -> DuplicateCancellation:
        """Cancel a clinic's second subscription now (two Checkouts completed for one clinic)
        and refund its latest invoice's payment in full, without a proration credit on top.
        Safe to repeat: a retry does nothing twice, and a subscription that ended for another
        reason is left alone (``canceled`` false)."""
        ...

    async def create_portal_session(self, *, customer_id: str, return_url: str, op_id: str) -> str:
        """The URL of a customer portal session (Stripe's hosted billing page).
        Raises :class:`NotSupportedByProvider` where there is none."""
        ...

    async def create_checkout_session(self, request: CheckoutRequest, *, op_id: str) -> str:
        """The URL of a hosted Checkout session. Raises :class:`NotSupportedByProvider`."""
        ...

    async def setup_payment_method(self, setup_intent_id: str) -> str | None:
        """The payment method a completed setup-mode Checkout saved (from its SetupIntent)."""
        ...
