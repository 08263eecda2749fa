"""What comes back from Stripe's hosted pages and trials: ``checkout.session.completed``
(subscription and setup mode) and ``customer.subscription.trial_will_end``.

Recorded events of Stripe's shape (tests/billing/fixtures/checkout_trial_events.json: a clinic
subscribes through Checkout with a trial, is told the trial ends, saves a card through a setup
Checkout, converts and pays) are delivered over HTTP in order, then shuffled with every event
twice, and the whole shuffled run replayed again: the final state is the ordered one, and the
trial email goes at most once per recipient. With the real SDK against localstripe, a
completed Checkout links the subscription Stripe created (whichever of it and
``customer.subscription.created`` comes first) and a setup Checkout's card becomes the default
at Stripe.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from aayu_accounts.billing.payment_provider.stripe import StripeProvider
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.stripe_webhook import service as webhooks
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.subscription import Subscription
from aayu_accounts.models.user import User
from tests.billing.factories import add_member, make_clinic, seed_default_plans
from tests.billing.webhook_helpers import (
    SECRET,
    deliver,
    drain_jobs,
    recorded_events,
    seed_recorded_plans,
    stripe_event,
    webhook_app,
)
from tests.fixtures.billing_stripe import checkout_leaves

EVENTS = "checkout_trial_events.json"
TRIAL_END = datetime.fromtimestamp(1795000000 + 14 * 86400, UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stripe_webhook_secret": SECRET,
            "public_url": "https://accounts.clinic-example.org",
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def app(settings: Settings, db: Database, keyring: Keyring) -> AsyncIterator[FastAPI]:
    async with webhook_app(settings, db, keyring) as application:
        yield application


async def _clinic(db: Database) -> tuple[str, list[str]]:
    """A clinic (owner, billing member, one clinician); returns its id and the user ids
    the billing emails go to."""
    async with db.session_scope() as session:
        await seed_recorded_plans(session)
        clinic = await make_clinic(session)
        billing_member = await add_member(session, clinic, "billing")
    return clinic.org_id, [clinic.owner_id, billing_member]


async def _state(db: Database, org_id: str) -> dict[str, Any]:
    async with db.session_scope(write=False) as session:
        sub = await session.scalar(select(Subscription).where(Subscription.org_id == org_id))
        assert sub is not None
        invoices = (await session.scalars(select(Invoice).where(Invoice.org_id == org_id))).all()
        return {
            "status": sub.status,
            "seats": sub.seats,
            "plan": sub.plan_id,
            "period": (sub.current_period_start, sub.current_period_end),
            "trial_end": sub.trial_end,
            "linked": (sub.provider_subscription_id or "").startswith("sub_"),
            "payment_method_suffix": (sub.payment_method or "").rsplit("_", 1)[-1],
            "converted": sub.converted_from_trial_at is not None,
            "invoices": sorted(
                (i.provider_invoice_id.rsplit("_", 1)[-1], i.status, i.amount_cents)
                for i in invoices
            ),
        }


async def _trial_emails(db: Database, org_id: str) -> list[str]:
    async with db.session_scope(write=False) as session:
        rows = await session.scalars(
            select(OutboxEmail).where(OutboxEmail.template == "billing_trial_will_end")
        )
        return [str(row.to_address) for row in rows if org_id in (row.body_text or "")]


async def _addresses(db: Database, user_ids: list[str]) -> list[str]:
    addresses = []
    async with db.session_scope(write=False) as session:
        for user_id in user_ids:
            user = await session.get(User, user_id)
            assert user is not None
            addresses.append(str(user.email))
    return sorted(addresses)


async def test_checkout_and_trial_events_in_any_order(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(TRIAL_END - timedelta(days=3, hours=1))
    start = frozen_clock.now()
    reference_org, recipients = await _clinic(db)
    for event in recorded_events(EVENTS, tag="ordered", org_id=reference_org):
        assert (await deliver(client, event)).status_code == 200
        await drain_jobs(db, frozen_clock)
    expected = await _state(db, reference_org)
    assert expected["status"] == "active"
    assert expected["seats"] == 2
    assert expected["trial_end"] == TRIAL_END
    assert expected["converted"] is True
    assert expected["payment_method_suffix"] == "visa"
    assert expected["invoices"] == [("1", "paid", 0), ("2", "paid", 7800)]
    # The trial notice went once to the owner and once to the billing member.
    assert sorted(await _trial_emails(db, reference_org)) == await _addresses(db, recipients)

    for seed in (7, 8):
        frozen_clock.set(start)
        org_id, recipients = await _clinic(db)
        events = recorded_events(EVENTS, tag=f"shuffled{seed}", org_id=org_id)
        for replay in range(2):  # the whole shuffled run delivered twice
            deliveries = events * 2  # and every event twice within it
            random.Random(seed * 10 + replay).shuffle(deliveries)
            for event in deliveries:
                assert (await deliver(client, event)).status_code == 200
            await drain_jobs(db, frozen_clock)
        assert await _state(db, org_id) == expected, f"seed {seed}"
        # In any order at most one notice per recipient (none when the trial had already
        # converted by the time the notice was processed).
        sent = await _trial_emails(db, org_id)
        assert len(sent) == len(set(sent))
        assert set(sent) <= set(await _addresses(db, recipients))


async def test_trial_will_end_email_once_per_event(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(TRIAL_END - timedelta(days=3))
    org_id, recipients = await _clinic(db)
    events = recorded_events(EVENTS, tag="notice", org_id=org_id)
    created, notice = events[1], events[3]
    assert notice["type"] == "customer.subscription.trial_will_end"
    await deliver(client, created)
    for _ in range(3):  # Stripe's redeliveries: one inbox row, one job
        assert (await deliver(client, notice)).status_code == 200
    await drain_jobs(db, frozen_clock)
    sent = await _trial_emails(db, org_id)
    assert sorted(sent) == await _addresses(db, recipients)
    async with db.session_scope(write=False) as session:
        email = await session.scalar(
            select(OutboxEmail).where(OutboxEmail.template == "billing_trial_will_end")
        )
        assert email is not None
        assert "2026-12-02" in (email.subject or "")
        text = email.body_text or ""
        assert "add a payment method" in text
        assert f"https://accounts.clinic-example.org/orgs/{org_id}/billing" in text
    # Processing the stored event again (a job retried after its commit) sends nothing more.
    async with db.session_scope() as session:
        assert await webhooks.process(session, notice["id"], None) == "already_processed"
    assert len(await _trial_emails(db, org_id)) == len(recipients)


# --- with the real SDK against localstripe --------------------------------------------


def _completed(org_id: str, mode: str, customer: str, **fields: Any) -> dict[str, Any]:
    recorded = recorded_events(EVENTS, tag="x", org_id=org_id)
    index = 0 if mode == "subscription" else 4
    session = recorded[index]["data"]["object"]
    return {**session, "customer": customer, **fields}


async def _process(db: Database, event: dict[str, Any], provider: StripeProvider) -> str:
    async with db.session_scope() as session:
        await webhooks.receive(session, event)
    async with db.session_scope() as session:
        return await webhooks.process(session, event["id"], provider)


async def test_completed_checkout_links_the_stripe_subscription_in_either_order(
    db: Database, billing: BillingRuntime, provider: StripeProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        first = await make_clinic(session, clinicians=2)
        second = await make_clinic(session, clinicians=2)
    outcomes = {}
    for clinic, completed_first in ((first, True), (second, False)):
        remote = await checkout_leaves(provider, clinic.org_id)
        completed = stripe_event(
            f"evt_cs_{clinic.org_id[:8]}",
            "checkout.session.completed",
            _completed(clinic.org_id, "subscription", remote.customer, subscription=remote.id),
            int(remote.created),
        )
        created = stripe_event(
            f"evt_sc_{clinic.org_id[:8]}",
            "customer.subscription.created",
            json.loads(json.dumps(remote.to_dict())),
            int(remote.created),
        )
        order = [completed, created] if completed_first else [created, completed]
        outcomes[clinic.org_id] = [await _process(db, event, provider) for event in order]
        # A redelivery of the completed Checkout changes nothing.
        again = {**completed, "id": completed["id"] + "_again"}
        assert await _process(db, again, provider) == "already_linked"
        async with db.session_scope(write=False) as session:
            rows = (
                await session.scalars(
                    select(Subscription).where(Subscription.org_id == clinic.org_id)
                )
            ).all()
            assert len(rows) == 1
            sub = rows[0]
            assert (sub.provider_subscription_id, sub.provider_customer_id) == (
                remote.id,
                remote.customer,
            )
            assert (sub.status, sub.seats, sub.plan_id) == ("active", 2, "clinic_monthly")
    assert outcomes[first.org_id] == ["subscription_linked", "refetched"]
    assert outcomes[second.org_id] == ["refetched", "already_linked"]
    # Audited where the completion did something: the first clinic's link only.
    async with db.session_scope(write=False) as session:
        audited = (
            await session.scalars(
                select(AuditEvent.org_id).where(AuditEvent.action == "billing:checkout:completed")
            )
        ).all()
    assert first.org_id in audited
    assert second.org_id not in audited


async def test_setup_checkout_makes_the_saved_card_the_default(
    db: Database, billing: BillingRuntime, provider: StripeProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
    remote = await checkout_leaves(provider, clinic.org_id)
    linked = stripe_event(
        "evt_setup_link",
        "checkout.session.completed",
        _completed(clinic.org_id, "subscription", remote.customer, subscription=remote.id),
        int(remote.created),
    )
    assert await _process(db, linked, provider) == "subscription_linked"
    # What the setup Checkout did in Stripe: a confirmed SetupIntent with a new card.
    v1 = provider.client.v1
    card = await v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    intent = await v1.setup_intents.create_async({"customer": remote.customer})
    intent = await v1.setup_intents.confirm_async(intent.id, {"payment_method": card.id})
    assert intent.status == "succeeded"
    completed = stripe_event(
        "evt_setup_done",
        "checkout.session.completed",
        _completed(clinic.org_id, "setup", remote.customer, setup_intent=intent.id),
        int(remote.created) + 60,
    )
    assert await _process(db, completed, provider) == "payment_method_updated"
    customer = await v1.customers.retrieve_async(remote.customer)
    assert customer.invoice_settings is not None
    assert customer.invoice_settings.default_payment_method == card.id
    async with db.session_scope(write=False) as session:
        sub = await session.scalar(select(Subscription).where(Subscription.org_id == clinic.org_id))
        assert sub is not None
        assert sub.payment_method == card.id
    # An older setup Checkout arriving late does not replace the newer default.
    late = stripe_event(
        "evt_setup_late",
        "checkout.session.completed",
        _completed(clinic.org_id, "setup", remote.customer, setup_intent=intent.id),
        int(remote.created) + 30,
    )
    assert await _process(db, late, provider) == "stale"
