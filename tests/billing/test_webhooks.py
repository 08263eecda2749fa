"""``POST /api/v1/webhooks/stripe``: signature on the raw body, the inbox, and order-insensitive
processing of recorded events of Stripe's real shape (tests/billing/fixtures/)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select

from aayu_accounts.billing import dunning
from aayu_accounts.billing.entitlement.service import check_entitlement
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.subscription import repository as subscription_repository
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.job import Job
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.stripe_event import StripeEvent
from aayu_accounts.models.subscription import Subscription
from tests.billing.factories import make_clinic
from tests.billing.webhook_helpers import (
    OLD_SECRET,
    SECRET,
    deliver,
    drain_jobs,
    recorded_events,
    seed_recorded_plans,
    sign,
    webhook_app,
)

LIFECYCLE = "subscription_lifecycle_events.json"


@pytest_asyncio.fixture(loop_scope="session")
async def app(settings: Settings, db: Database, keyring: Keyring) -> AsyncIterator[FastAPI]:
    async with webhook_app(settings, db, keyring) as application:
        yield application


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Two endpoint secrets while one is rolled.
    return settings.model_copy(update={"stripe_webhook_secret": f"{SECRET},{OLD_SECRET}"})


async def _clinic(db: Database) -> str:
    async with db.session_scope() as session:
        await seed_recorded_plans(session)
        clinic = await make_clinic(session)
    return clinic.org_id


async def _final_state(db: Database, org_id: str) -> dict[str, Any]:
    async with db.session_scope(write=False) as session:
        sub = await session.scalar(select(Subscription).where(Subscription.org_id == org_id))
        assert sub is not None
        invoices = (await session.scalars(select(Invoice).where(Invoice.org_id == org_id))).all()
        return {
            "plan": sub.plan_id,
            "status": sub.status,
            "seats": sub.seats,
            "period": (sub.current_period_start, sub.current_period_end),
            "cancel_at_period_end": sub.cancel_at_period_end,
            "past_due_since": sub.past_due_since,
            "dunning_stage": sub.dunning_stage,
            "payment_method_suffix": (sub.payment_method or "").rsplit("_", 1)[-1],
            "invoices": sorted(
                (
                    i.provider_invoice_id.rsplit("_", 1)[-1],
                    i.status,
                    i.amount_cents,
                    i.attempt_count,
                )
                for i in invoices
            ),
        }


async def test_signature_is_checked_on_the_raw_body(
    client: httpx.AsyncClient, db: Database
) -> None:
    org_id = await _clinic(db)
    event = recorded_events(LIFECYCLE, tag="sig", org_id=org_id)[0]
    raw = json.dumps(event).encode()
    url = "/api/v1/webhooks/stripe"

    async def post(body: bytes, header: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Stripe-Signature"] = header
        return await client.post(url, content=body, headers=headers)

    for body, header in (
        (raw, None),
        (raw, sign(raw, "whsec_wrong")),
        (raw + b" ", sign(raw)),  # one byte changed: the classic re-serialization bug
        (json.dumps(event, indent=2).encode(), sign(raw)),
        (raw, sign(raw, timestamp=int(time.time()) - 301)),
        (raw, "garbage"),
        (b"\xff\xfe", sign(b"\xff\xfe")),  # not UTF-8: refused, never a 500
        (b"[1, 2]", sign(b"[1, 2]")),  # signed but not an event
    ):
        response = await post(body, header)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "signature_invalid"
    # Several v1 values (Stripe signs with each live secret): any valid one passes.
    ts = int(time.time())
    good = sign(raw, timestamp=ts).split("v1=")[1]
    response = await post(raw, f"t={ts},v1={'0' * 64},v1={good}")
    assert response.status_code == 200, response.text
    # Our previous endpoint secret still verifies while it is being rolled.
    second = recorded_events(LIFECYCLE, tag="sig", org_id=org_id)[1]
    raw2 = json.dumps(second).encode()
    assert (await post(raw2, sign(raw2, OLD_SECRET))).status_code == 200


async def test_duplicate_delivery_is_acknowledged_and_ignored(
    client: httpx.AsyncClient, db: Database
) -> None:
    org_id = await _clinic(db)
    event = recorded_events(LIFECYCLE, tag="dup", org_id=org_id)[0]
    first = await deliver(client, event)
    second = await deliver(client, event)
    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert (second.status_code, second.json()) == (200, {"received": True, "duplicate": True})
    async with db.session_scope(write=False) as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(StripeEvent).where(StripeEvent.id == event["id"])
            )
            == 1
        )
        jobs = await session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == "billing.stripe_event")
        )
        assert jobs == 1


async def test_shuffled_duplicate_deliveries_reach_the_ordered_state(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    # Ordered, once each: the reference.
    reference_org = await _clinic(db)
    for event in recorded_events(LIFECYCLE, tag="ordered", org_id=reference_org):
        assert (await deliver(client, event)).status_code == 200
        await drain_jobs(db, frozen_clock)
    expected = await _final_state(db, reference_org)
    assert expected["status"] == "active"
    assert expected["seats"] == 5
    assert expected["cancel_at_period_end"] is True
    assert expected["payment_method_suffix"] == "mc"
    assert expected["invoices"] == [("1", "paid", 11700, 1), ("2", "paid", 11700, 3)]

    for seed in (1, 2, 3):
        org_id = await _clinic(db)
        events = recorded_events(LIFECYCLE, tag=f"shuffled{seed}", org_id=org_id)
        deliveries = events * 2  # every event twice (at-least-once)
        random.Random(seed).shuffle(deliveries)
        for event in deliveries:
            assert (await deliver(client, event)).status_code == 200
        await drain_jobs(db, frozen_clock)
        assert await _final_state(db, org_id) == expected, f"seed {seed}"
        if seed != 1:
            continue
        # The whole run replayed in another order after it was processed (Stripe's retries
        # of deliveries it thinks failed): acknowledged, nothing changes.
        random.Random(seed + 100).shuffle(deliveries)
        for event in deliveries:
            answer = await deliver(client, event)
            assert answer.status_code == 200
            assert answer.json()["duplicate"] is True
        await drain_jobs(db, frozen_clock)
        assert await _final_state(db, org_id) == expected, f"seed {seed}, replayed"


async def test_ordered_delivery_runs_dunning(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock, billing: BillingRuntime
) -> None:
    """past_due from Stripe starts the grace period; paid ends it (emails at each step)."""
    org_id = await _clinic(db)
    events = recorded_events(LIFECYCLE, tag="dunning", org_id=org_id)
    for event in events[:10]:
        await deliver(client, event)
        await drain_jobs(db, frozen_clock)
    async with db.session_scope(write=False) as session:
        sub = await session.scalar(select(Subscription).where(Subscription.org_id == org_id))
        assert sub is not None
        assert sub.status == "past_due"
        assert sub.dunning_stage == "grace"
        assert sub.past_due_since is not None
        past_due_since = sub.past_due_since
        member = next(iter(await subscription_repository.active_members(session, org_id)))[0]
        assert (
            await check_entitlement(session, org_id=org_id, user_id=member, feature="notes")
        ).allowed
    # The grace period ends: restricted, but sign-in and data export still work.
    frozen_clock.set(past_due_since + timedelta(days=7, seconds=1))
    async with db.session_scope() as session:
        assert await dunning.advance(session, frozen_clock.now()) == [org_id]
        decision = await check_entitlement(session, org_id=org_id, user_id=member, feature="notes")
        assert (decision.allowed, decision.reason) == (False, "past_due_grace_over")
        assert (
            await check_entitlement(session, org_id=org_id, user_id=member, feature="data_export")
        ).allowed
    for event in events[10:]:
        await deliver(client, event)
        await drain_jobs(db, frozen_clock)
    state = await _final_state(db, org_id)
    assert state["status"] == "active"
    assert state["dunning_stage"] == "none"
    async with db.session_scope(write=False) as session:
        assert (
            await check_entitlement(session, org_id=org_id, user_id=member, feature="notes")
        ).allowed
        sent = (await session.scalars(select(OutboxEmail.template))).all()
        for template in ("billing_payment_failed", "billing_restricted", "billing_recovered"):
            assert template in sent
