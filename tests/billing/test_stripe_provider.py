"""The ``stripe`` provider: the real stripe SDK over HTTP against localstripe on loopback.

localstripe lacks trials, test clocks (so renewals), Prices and idempotency keys; renewals,
failed renewals and dunning with Stripe are covered by the recorded events in
test_webhooks.py. Here: subscribe, decline (nothing created on our side), seat change with
Stripe's proration invoice, a declined proration (reverted), cancel at period end and resume,
and webhook processing that re-reads the subscription from Stripe instead of trusting a
stale payload.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from aayu_accounts.billing.errors import PaymentFailed
from aayu_accounts.billing.payment_provider.stripe import StripeProvider, is_transient
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.stripe_webhook import service as webhooks
from aayu_accounts.db import Database
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.subscription import Subscription
from tests.billing import as_owner
from tests.billing.factories import make_clinic, seed_default_plans
from tests.billing.webhook_helpers import recorded_events


async def _card(provider: StripeProvider, number: str) -> str:
    created = await provider.client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    return str(created.id)


async def test_lifecycle_with_the_stripe_sdk(
    db: Database, billing: BillingRuntime, provider: StripeProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session, clinicians=3)

    # A card Stripe declines when it is attached: 402, no subscription or invoice of ours.
    declined = await _card(provider, "4000000000000002")
    with pytest.raises(PaymentFailed):
        async with db.session_scope() as session:
            await as_owner.subscribe(
                session,
                provider,
                clinic,
                plan_id="clinic_monthly",
                seats=3,
                payment_method=declined,
                trial=False,
            )
    async with db.session_scope(write=False) as session:
        assert (
            await session.scalar(select(Subscription).where(Subscription.org_id == clinic.org_id))
            is None
        )
        assert (
            await session.scalars(select(Invoice).where(Invoice.org_id == clinic.org_id))
        ).all() == []

    # Subscribe with Stripe's test card: the plan is created in Stripe on first use.
    async with db.session_scope() as session:
        sub = await as_owner.subscribe(
            session,
            provider,
            clinic,
            plan_id="clinic_monthly",
            seats=3,
            payment_method="pm_card_visa",
            trial=False,
        )
        assert sub.status == "active"
        assert sub.provider == "stripe"
        assert sub.provider_subscription_id is not None
        assert sub.provider_subscription_id.startswith("sub_")
    remote = await provider.client.v1.subscriptions.retrieve_async(sub.provider_subscription_id)
    assert remote["items"].data[0].quantity == 3
    assert remote.status == "active"
    async with db.session_scope(write=False) as session:
        invoices = (
            await session.scalars(select(Invoice).where(Invoice.org_id == clinic.org_id))
        ).all()
        assert [(i.status, i.amount_cents) for i in invoices] == [("paid", 3 * 3900)]
        first_invoice = invoices[0].provider_invoice_id

    # 3 -> 5 seats: Stripe's proration invoice is created and paid at once. (localstripe
    # prorates the whole period; Stripe prorates by time left, as our preview does.)
    async with db.session_scope() as session:
        sub, _ = await as_owner.change(session, provider, clinic, seats=5)
        assert sub.seats == 5
        proration = await session.scalar(
            select(Invoice).where(
                Invoice.org_id == clinic.org_id,
                Invoice.provider_invoice_id != first_invoice,
            )
        )
        assert proration is not None
        assert proration.status == "paid"
        assert proration.amount_cents == 5 * 3900 - 3 * 3900
    remote = await provider.client.v1.subscriptions.retrieve_async(
        sub.provider_subscription_id or ""
    )
    assert remote["items"].data[0].quantity == 5

    # Cancel at period end, then resume.
    async with db.session_scope() as session:
        sub, _ = await as_owner.change(session, provider, clinic, cancel_at_period_end=True)
        assert sub.cancel_at_period_end
    remote = await provider.client.v1.subscriptions.retrieve_async(
        sub.provider_subscription_id or ""
    )
    assert remote.cancel_at_period_end is True
    async with db.session_scope() as session:
        sub, _ = await as_owner.change(session, provider, clinic, cancel_at_period_end=False)
        assert not sub.cancel_at_period_end
    remote = await provider.client.v1.subscriptions.retrieve_async(
        sub.provider_subscription_id or ""
    )
    assert remote.cancel_at_period_end is False

    # The card starts failing: a seat increase is declined and nothing changes anywhere.
    # (Last: localstripe, unlike Stripe, expires a subscription whose invoice is voided.)
    failing = await _card(provider, "4000000000000341")
    async with db.session_scope() as session:
        await as_owner.change(session, provider, clinic, payment_method=failing)
    with pytest.raises(PaymentFailed):
        async with db.session_scope() as session:
            await as_owner.change(session, provider, clinic, seats=7)
    remote = await provider.client.v1.subscriptions.retrieve_async(
        sub.provider_subscription_id or ""
    )
    assert remote["items"].data[0].quantity == 5
    async with db.session_scope(write=False) as session:
        stored = await session.scalar(
            select(Subscription).where(Subscription.org_id == clinic.org_id)
        )
        assert stored is not None
        assert stored.seats == 5


async def test_webhook_rereads_the_subscription_from_stripe(
    db: Database, billing: BillingRuntime, provider: StripeProvider
) -> None:
    """A stale event (past_due, 3 seats) for a subscription Stripe holds as active with 3
    seats: the handler re-reads Stripe, so the stale payload does not win."""
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
        sub = await as_owner.subscribe(
            session,
            provider,
            clinic,
            plan_id="clinic_monthly",
            seats=2,
            payment_method="pm_card_visa",
            trial=False,
        )
    stale: dict[str, Any] = recorded_events(
        "subscription_lifecycle_events.json", tag="x", org_id=clinic.org_id
    )[9]
    assert stale["data"]["object"]["status"] == "past_due"
    text = json.dumps(stale).replace("sub_x", sub.provider_subscription_id or "")
    stale = json.loads(text)
    stale["created"] = 4_000_000_000  # newer than anything: only a re-read can refute it
    async with db.session_scope() as session:
        assert await webhooks.receive(session, stale)
    async with db.session_scope() as session:
        outcome = await webhooks.process(session, stale["id"], provider)
        assert outcome == "refetched"
    async with db.session_scope(write=False) as session:
        stored = await session.scalar(
            select(Subscription).where(Subscription.org_id == clinic.org_id)
        )
        assert stored is not None
        assert (stored.status, stored.seats) == ("active", 2)


def test_transient_errors_are_retried_declines_are_not() -> None:
    assert is_transient(stripe.APIConnectionError("reset"))  # type: ignore[no-untyped-call]
    assert is_transient(stripe.APIError("boom", http_status=503))
    declined = stripe.CardError("declined", None, "card_declined", http_status=402)  # type: ignore[no-untyped-call]
    assert not is_transient(declined)
    bad = stripe.InvalidRequestError("bad", None, http_status=400)  # type: ignore[no-untyped-call]
    assert not is_transient(bad)
