"""Stripe answering 500s and timing out: retries carry the same idempotency key, one charge.

The real ``stripe`` SDK and our provider talk to a stand-in (tests/faults/stripe_standin.py)
in front of localstripe. Creating a subscription meets a 500 on the customer, then a 500 and a
timeout on the subscription itself — the timeout after Stripe *applied* it, so only the
idempotency key keeps the retry from subscribing (and charging) twice. At the end: every
attempt of a step carried one key, localstripe holds one customer, one subscription and one
paid invoice, and our database agrees.

A 500 here stands for a failure in front of Stripe's API (nothing applied, nothing saved for
the key); the timeout is the case where Stripe applied the request and the answer was lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import pytest_asyncio
from sqlalchemy import select

from aayu_accounts.billing import runtime
from aayu_accounts.billing.payment_provider.stripe import StripeProvider
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit import resilience
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.subscription import Subscription
from tests.billing import as_owner
from tests.billing.factories import make_clinic, seed_default_plans
from tests.faults.stripe_standin import StripeStandIn, stripe_stand_in
from tests.fixtures.billing_stripe import (
    billing_runtime,
    stored,
    stripe_provider,
    stripe_settings_for,
)
from tests.fixtures.stripe import LocalStripe

ATTEMPT_TIMEOUT = 1.0


@pytest_asyncio.fixture(loop_scope="session")
async def faulty_stripe(localstripe: LocalStripe) -> AsyncIterator[StripeStandIn]:
    async with stripe_stand_in(localstripe.base_url, hold_seconds=ATTEMPT_TIMEOUT + 1.5) as s:
        yield s


@pytest.fixture
def stripe_settings(
    settings: Settings, localstripe: LocalStripe, faulty_stripe: StripeStandIn
) -> Settings:
    return stripe_settings_for(settings, localstripe, api_base=faulty_stripe.url)


@pytest.fixture
def billing(stripe_settings: Settings) -> Iterator[runtime.BillingRuntime]:
    with billing_runtime(stripe_settings) as configured:
        yield configured


@pytest_asyncio.fixture(loop_scope="session")
async def provider(stripe_settings: Settings) -> AsyncIterator[StripeProvider]:
    async with stripe_provider(stripe_settings) as created:
        yield created


async def test_retries_reuse_the_idempotency_key_and_charge_once(
    db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    faulty_stripe: StripeStandIn,
) -> None:
    stripe_dep = resilience.dependency(resilience.STRIPE)
    # A short timeout per attempt and quick backoff (the autouse fixture restores defaults).
    stripe_dep.configure(
        replace(
            stripe_dep.policy,
            timeout_seconds=ATTEMPT_TIMEOUT,
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.05,
        )
    )
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session, clinicians=3)

    faulty_stripe.fail_next("POST", "/v1/customers", "500")
    faulty_stripe.fail_next("POST", "/v1/subscriptions", "500", "timeout")
    started = time.perf_counter()
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
        subscription_id = sub.provider_subscription_id
    # Bounded: two quick failures and one attempt timeout, not the stand-in's hold.
    assert time.perf_counter() - started < ATTEMPT_TIMEOUT + 5

    outcomes = [(s.path, s.outcome) for s in faulty_stripe.seen if s.method == "POST"]
    assert ("/v1/subscriptions", "timeout") in outcomes
    assert ("/v1/subscriptions", "replayed") in outcomes  # the retry got the first answer
    # Every attempt of a step carried the same key, one of ours.
    for path in ("/v1/customers", "/v1/subscriptions"):
        keys = faulty_stripe.keys_for("POST", path)
        assert len(keys) >= 2, (path, keys)
        assert len(set(keys)) == 1, (path, keys)
        assert keys[0] is not None
        assert keys[0].startswith("aayu:")
    assert len(faulty_stripe.keys_for("POST", "/v1/subscriptions")) == 3

    # Stripe's side: one customer, one subscription, one invoice — charged once.
    assert len(stored("customer")) == 1
    subscriptions = stored("subscription")
    assert [s.id for s in subscriptions] == [subscription_id]
    invoices = stored("invoice")
    assert len(invoices) == 1
    assert invoices[0].status == "paid"
    assert invoices[0].amount_due == 3 * 3900

    # Ours agrees.
    async with db.session_scope(write=False) as session:
        ours = (
            await session.scalars(select(Subscription).where(Subscription.org_id == clinic.org_id))
        ).all()
        assert [s.provider_subscription_id for s in ours] == [subscription_id]
        billed = (
            await session.scalars(select(Invoice).where(Invoice.org_id == clinic.org_id))
        ).all()
        assert [(i.status, i.amount_cents) for i in billed] == [("paid", 3 * 3900)]
