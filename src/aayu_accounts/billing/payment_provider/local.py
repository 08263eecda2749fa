"""The embedded ``local`` provider: Stripe's test payment methods with Stripe's outcomes.

No network and no state of its own: it decides each payment from the payment method id and
returns the new state, which the subscription service stores. Renewals happen when the
renewal task finds a period that ended (by ``kit.clock``). Refused in production (config).

Outcomes (https://docs.stripe.com/testing#declined-payments): ``pm_card_visa``,
``pm_card_mastercard`` (and the other brand ids) succeed; ``pm_card_chargeDeclined``,
``pm_card_chargeDeclinedInsufficientFunds`` and the other ``chargeDeclined*`` ids are declined;
``pm_card_authenticationRequired`` needs the customer's action (subscription ``incomplete``);
``pm_card_chargeCustomerFail`` attaches but every later charge fails (dunning simulation).

There are no hosted pages (customer portal, Checkout): those raise
:class:`NotSupportedByProvider`, answered 409 ``not_supported_by_provider``; the API's own
subscription routes do everything they would.
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import datetime, timedelta

from aayu_accounts.billing.payment_provider.base import (
    CheckoutRequest,
    DuplicateCancellation,
    InvoiceState,
    NotSupportedByProvider,
    PaymentDeclined,
    PriceSpec,
    SubscriptionState,
)
from aayu_accounts.kit.ids import new_id

SUCCEEDS = frozenset(
    {
        "pm_card_visa",
        "pm_card_visa_debit",
        "pm_card_mastercard",
        "pm_card_mastercard_debit",
        "pm_card_amex",
        "pm_card_discover",
        "pm_card_us",
    }
)
AUTHENTICATION_REQUIRED = frozenset(
    {"pm_card_authenticationRequired", "pm_card_authenticationRequiredOnSetup"}
)
FAILS_LATER = frozenset({"pm_card_chargeCustomerFail"})


def add_interval(start: datetime, interval: str) -> datetime:
    """One billing interval later, clamped to the month's end (Stripe's anchoring)."""
    months = 12 if interval == "year" else 1
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def charge_outcome(payment_method: str | None) -> str:
    """``succeeded``, ``requires_action`` or a decline code."""
    if payment_method in SUCCEEDS:
        return "succeeded"
    if payment_method in AUTHENTICATION_REQUIRED:
        return "requires_action"
    if payment_method and "InsufficientFunds" in payment_method:
        return "insufficient_funds"
    return "card_declined"


def _invoice(
    price: PriceSpec,
    *,
    amount: int,
    reason: str,
    start: datetime,
    end: datetime,
    paid: bool,
    now: datetime,
) -> InvoiceState:
    return InvoiceState(
        provider_invoice_id=f"in_local_{new_id().replace('-', '')[:24]}",
        status="paid" if paid else "open",
        billing_reason=reason,
        amount_cents=amount,
        currency=price.currency,
        period_start=start,
        period_end=end,
        attempt_count=1,
        paid_at=now if paid else None,
    )


class LocalProvider:
    name = "local"

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
    ) -> SubscriptionState:
        # Stripe checks a card when it is attached: a declined card creates nothing.
        if payment_method is not None and payment_method not in FAILS_LATER:
            outcome = charge_outcome(payment_method)
            if outcome not in ("succeeded", "requires_action"):
                raise PaymentDeclined(outcome)
        total = price.amount_cents * (seats if price.per_seat else 1)
        ids = new_id().replace("-", "")[:24]
        if trial_days > 0:
            trial_end = now + timedelta(days=trial_days)
            invoice = _invoice(
                price,
                amount=0,
                reason="subscription_create",
                start=now,
                end=trial_end,
                paid=True,
                now=now,
            )
            return SubscriptionState(
                provider_subscription_id=f"sub_local_{ids}",
                customer_id=f"cus_local_{ids}",
                status="trialing",
                plan_id=price.plan_id,
                seats=seats,
                current_period_start=now,
                current_period_end=trial_end,
                trial_end=trial_end,
                payment_method=payment_method,
                invoices=(invoice,),
            )
        end = add_interval(now, price.interval)
        outcome = charge_outcome(payment_method)
        if outcome not in ("succeeded", "requires_action"):
            raise PaymentDeclined(outcome)
        paid = outcome == "succeeded"
        invoice = _invoice(
            price,
            amount=total,
            reason="subscription_create",
            start=now,
            end=end,
            paid=paid,
            now=now,
        )
        return SubscriptionState(
            provider_subscription_id=f"sub_local_{ids}",
            customer_id=f"cus_local_{ids}",
            status="active" if paid else "incomplete",
            plan_id=price.plan_id,
            seats=seats,
            current_period_start=now,
            current_period_end=end,
            payment_method=payment_method,
            invoices=(invoice,),
        )

    async def change_subscription(
        self,
        current: SubscriptionState,
        *,
        price: PriceSpec,
        seats: int,
        proration_cents: int,
        now: datetime,
        op_id: str,
    ) -> SubscriptionState:
        invoices: tuple[InvoiceState, ...] = ()
        if proration_cents != 0 and current.status != "trialing":
            # Prorations are invoiced at once (Stripe's proration_behavior=always_invoice); a
            # credit is a negative, settled invoice line.
            if proration_cents > 0 and charge_outcome(current.payment_method) != "succeeded":
                raise PaymentDeclined(charge_outcome(current.payment_method))
            invoices = (
                _invoice(
                    price,
                    amount=proration_cents,
                    reason="subscription_update",
                    start=now,
                    end=current.current_period_end,
                    paid=True,
                    now=now,
                ),
            )
        return replace(current, plan_id=price.plan_id, seats=seats, invoices=invoices)

    async def set_cancel_at_period_end(
        self, current: SubscriptionState, *, cancel: bool, op_id: str
    ) -> SubscriptionState:
        return replace(current, cancel_at_period_end=cancel, invoices=())

    async def update_payment_method(
        self, current: SubscriptionState, *, payment_method: str, now: datetime, op_id: str
    ) -> SubscriptionState:
        if payment_method not in FAILS_LATER:
            outcome = charge_outcome(payment_method)
            if outcome != "succeeded":
                raise PaymentDeclined(outcome)
        updated = replace(current, payment_method=payment_method, invoices=())
        if current.status in ("past_due", "unpaid", "incomplete"):
            # Stripe retries the open invoice with the new default payment method.
            return await self._collect(updated, now=now)
        return updated

    async def _collect(self, current: SubscriptionState, *, now: datetime) -> SubscriptionState:
        if charge_outcome(current.payment_method) != "succeeded":
            return current
        return replace(current, status="active")

    async def renew(
        self, current: SubscriptionState, *, price: PriceSpec, now: datetime, op_id: str
    ) -> SubscriptionState:
        if current.cancel_at_period_end:
            return replace(current, status="canceled", canceled_at=now, invoices=())
        start = current.current_period_end
        end = add_interval(start, price.interval)
        total = price.amount_cents * (current.seats if price.per_seat else 1)
        paid = charge_outcome(current.payment_method) == "succeeded"
        invoice = _invoice(
            price,
            amount=total,
            reason="subscription_cycle",
            start=start,
            end=end,
            paid=paid,
            now=now,
        )
        return replace(
            current,
            status="active" if paid else "past_due",
            current_period_start=start,
            current_period_end=end,
            trial_end=current.trial_end,
            invoices=(invoice,),
        )

    async def fetch_subscription(self, provider_subscription_id: str) -> SubscriptionState | None:
        # The local provider keeps no state: our own tables are the record.
        return None

    async def cancel_duplicate_subscription(
        self, provider_subscription_id: str, *, keep_subscription_id: str, op_id: str
    ) -> DuplicateCancellation:
        # Its subscriptions exist only as our rows, one per clinic: there is never a second
        # one to cancel (a concurrent subscribe loses on the unique row before anything else).
        return DuplicateCancellation(provider_subscription_id, canceled=False)

    async def create_portal_session(self, *, customer_id: str, return_url: str, op_id: str) -> str:
        raise NotSupportedByProvider("customer_portal")

    async def create_checkout_session(self, request: CheckoutRequest, *, op_id: str) -> str:
        raise NotSupportedByProvider("checkout")

    async def setup_payment_method(self, setup_intent_id: str) -> str | None:
        raise NotSupportedByProvider("checkout")
