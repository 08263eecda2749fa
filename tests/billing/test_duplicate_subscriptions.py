"""Two Checkouts completed for one clinic (two tabs, a double click): the second Stripe
subscription is canceled at Stripe and its payment refunded, once, by a job that survives
Stripe's outages, and never the clinic's own subscription.

The real stripe SDK and our provider talk to localstripe on loopback (tests/fixtures/stripe.py);
what Checkout leaves behind (a customer and a paid subscription carrying our org id) is created
through the SDK, and the ``checkout.session.completed`` / ``customer.subscription.*`` events
that announce it are delivered to our inbox with the shapes Stripe sends and processed by the
job runner, as in production. The outage test puts tests/faults/stripe_standin.py in front of
localstripe (a 500 in front of Stripe; a timeout after Stripe applied the request).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.billing import runtime
from aayu_accounts.billing.checkout import service as checkout
from aayu_accounts.billing.entitlement.cache import cache
from aayu_accounts.billing.payment_provider.stripe import StripeProvider
from aayu_accounts.billing.stripe_webhook import service as webhooks
from aayu_accounts.config import PaymentProvider, Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import resilience
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.job import Job
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.subscription import Subscription
from aayu_accounts.models.user import User
from tests.billing.factories import Clinic, make_clinic, seed_default_plans
from tests.billing.webhook_helpers import drain_jobs, stripe_event
from tests.faults.stripe_standin import StripeStandIn, stripe_stand_in
from tests.fixtures.billing_stripe import SEAT_PRICE, billing_runtime, checkout_leaves, stored
from tests.fixtures.stripe import HostedPagesStandIn, LocalStripe

DUPLICATE_CANCELED = "billing:subscription:duplicate_canceled"
ATTEMPT_TIMEOUT = 1.0


@pytest.fixture
def billing(stripe_settings: Settings) -> Iterator[runtime.BillingRuntime]:
    """The job runner's billing configuration: the Stripe provider, as in production."""
    with billing_runtime(stripe_settings) as configured:
        yield configured


async def _charge_of(provider: StripeProvider, remote: Any) -> Any:
    """The charge that paid a subscription's first invoice."""
    v1 = provider.client.v1
    invoice = await v1.invoices.retrieve_async(str(remote.latest_invoice))
    charge = invoice.charge  # type: ignore[attr-defined]  # API versions before 2025-03-31
    return await v1.charges.retrieve_async(charge if isinstance(charge, str) else charge.id)


def _completed(org_id: str, remote: Any, suffix: str = "") -> dict[str, Any]:
    session = {
        "id": f"cs_test_{remote.id}",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "client_reference_id": org_id,
        "metadata": {"aayu_org_id": org_id},
        "customer": remote.customer,
        "subscription": remote.id,
        "livemode": False,
    }
    return stripe_event(
        f"evt_cs_{remote.id}{suffix}", "checkout.session.completed", session, int(remote.created)
    )


def _subscription_event(kind: str, remote: Any, suffix: str = "") -> dict[str, Any]:
    payload = json.loads(json.dumps(remote.to_dict()))
    name = kind.rsplit(".", 1)[-1]
    return stripe_event(f"evt_{name}_{remote.id}{suffix}", kind, payload, int(remote.created))


async def _deliver(db: Database, frozen_clock: FrozenClock, *events: dict[str, Any]) -> None:
    """Into the inbox (a redelivered id is ignored there), then the job runner."""
    for event in events:
        async with db.session_scope() as session:
            await webhooks.receive(session, event)
    await drain_jobs(db, frozen_clock)


async def _outcomes(db: Database, event_ids: list[str]) -> list[str]:
    async with db.session_scope(write=False) as session:
        rows = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "billing:webhook:processed",
                    AuditEvent.target_id.in_(event_ids),
                )
            )
        ).all()
        by_id = {row.target_id: str(row.details["outcome"]) for row in rows}
    return [by_id.get(event_id, "unprocessed") for event_id in event_ids]


async def _row(db: Database, org_id: str) -> tuple[str | None, str, int]:
    """The clinic's one row: (Stripe subscription id, status, seats)."""
    async with db.session_scope(write=False) as session:
        rows = (
            await session.scalars(select(Subscription).where(Subscription.org_id == org_id))
        ).all()
        assert len(rows) == 1
        return rows[0].provider_subscription_id, rows[0].status, rows[0].seats


async def _remote_status(provider: StripeProvider, subscription_id: str) -> str:
    fetched = await provider.fetch_subscription(subscription_id)
    assert fetched is not None
    return fetched.status


async def _duplicate_audits(db: Database, org_id: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(target, details) of the clinic's ``duplicate_canceled`` audit events."""
    async with db.session_scope(write=False) as session:
        rows = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == DUPLICATE_CANCELED, AuditEvent.org_id == org_id
            )
        )
        return [(row.target_id, dict(row.details)) for row in rows]


async def _duplicate_emails(db: Database, clinic: Clinic) -> list[tuple[str, str]]:
    """(recipient, body) of the duplicate notices about this clinic."""
    async with db.session_scope(write=False) as session:
        rows = await session.scalars(
            select(OutboxEmail).where(OutboxEmail.template == "billing_duplicate_canceled")
        )
        return [
            (str(row.to_address), row.body_text or "")
            for row in rows
            if clinic.org_id in (row.body_text or "")
        ]


async def _owner_email(db: Database, clinic: Clinic) -> str:
    async with db.session_scope(write=False) as session:
        owner = await session.get(User, clinic.owner_id)
        assert owner is not None
        return str(owner.email)


async def _new_clinic(db: Database) -> Clinic:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        return await make_clinic(session, clinicians=2)


async def test_two_completed_checkouts_leave_one_subscription(
    db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    frozen_clock: FrozenClock,
) -> None:
    clinic = await _new_clinic(db)
    first = await checkout_leaves(provider, clinic.org_id)
    second = await checkout_leaves(provider, clinic.org_id, seats=3)
    assert (first.status, second.status) == ("active", "active")  # both paid: billed twice

    # The first Checkout's events, then the second's, each event delivered twice.
    first_events = [
        _completed(clinic.org_id, first),
        _subscription_event("customer.subscription.created", first),
    ]
    second_events = [
        _subscription_event("customer.subscription.created", second),
        _completed(clinic.org_id, second),
    ]
    await _deliver(db, frozen_clock, *first_events, *first_events)
    await _deliver(db, frozen_clock, *second_events, *second_events)

    # Stripe: the clinic's subscription stays, the duplicate is canceled and its payment
    # (3 seats) refunded in full, once.
    assert await _remote_status(provider, first.id) == "active"
    assert await _remote_status(provider, second.id) == "canceled"
    refunds = stored("refund")
    assert [(r.amount, r.metadata.get("aayu_subscription_id")) for r in refunds] == [
        (3 * SEAT_PRICE, second.id)
    ]
    assert (await _charge_of(provider, second)).refunded is True
    assert (await _charge_of(provider, first)).refunded is False

    # Ours: one row, the first subscription, active; the events say what was done.
    assert await _row(db, clinic.org_id) == (first.id, "active", 2)
    assert await _outcomes(db, [e["id"] for e in second_events]) == [
        "duplicate_cancel_queued",
        "duplicate_cancel_queued",
    ]
    audits = await _duplicate_audits(db, clinic.org_id)
    assert audits == [
        (
            second.id,
            {"kept_subscription_id": first.id, "refunded_cents": 3 * SEAT_PRICE, "currency": "usd"},
        )
    ]
    emails = await _duplicate_emails(db, clinic)
    assert [to for to, _ in emails] == [await _owner_email(db, clinic)]
    assert "117.00 USD" in emails[0][1]

    # Stripe redelivers everything later under new event ids (and the deletion our cancel
    # caused arrives): nothing more is canceled, refunded, audited or emailed.
    canceled_remote = await provider.client.v1.subscriptions.retrieve_async(second.id)
    late = [
        *(dict(e, id=e["id"] + "_late") for e in (*first_events, *second_events)),
        _subscription_event("customer.subscription.deleted", canceled_remote),
    ]
    await _deliver(db, frozen_clock, *late)
    assert await _outcomes(db, [e["id"] for e in late]) == [
        "already_linked",
        "refetched",
        "duplicate_ended",
        "duplicate_ended",
        "duplicate_ended",
    ]
    assert len(stored("refund")) == 1
    assert len(await _duplicate_audits(db, clinic.org_id)) == 1
    assert len(await _duplicate_emails(db, clinic)) == 1
    assert await _remote_status(provider, first.id) == "active"
    assert (await _row(db, clinic.org_id))[0] == first.id


async def test_reordered_events_never_cancel_the_clinics_subscription(
    db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    frozen_clock: FrozenClock,
) -> None:
    """The clinic ends its subscription in the portal and subscribes again through Checkout;
    the new subscription's events overtake the old one's deletion. The new one is not a
    duplicate: it replaces the row, and nothing is canceled or refunded."""
    clinic = await _new_clinic(db)
    old = await checkout_leaves(provider, clinic.org_id)
    await _deliver(db, frozen_clock, _completed(clinic.org_id, old))
    assert (await _row(db, clinic.org_id))[0] == old.id
    ended = await provider.client.v1.subscriptions.cancel_async(old.id)  # the portal
    new = await checkout_leaves(provider, clinic.org_id, seats=4)

    new_events = [
        _subscription_event("customer.subscription.created", new),
        _completed(clinic.org_id, new),
    ]
    await _deliver(db, frozen_clock, *new_events)
    assert await _row(db, clinic.org_id) == (new.id, "active", 4)
    # The old one's deletion and a redelivery of its creation arrive last.
    late = [
        _subscription_event("customer.subscription.deleted", ended),
        _subscription_event("customer.subscription.created", old, suffix="_again"),
    ]
    await _deliver(db, frozen_clock, *late)
    assert await _outcomes(db, [e["id"] for e in late]) == ["duplicate_ended", "duplicate_ended"]
    assert await _remote_status(provider, new.id) == "active"
    assert await _row(db, clinic.org_id) == (new.id, "active", 4)
    assert stored("refund") == []
    assert await _duplicate_audits(db, clinic.org_id) == []
    async with db.session_scope(write=False) as session:
        jobs = (
            await session.scalars(
                select(Job).where(Job.kind == webhooks.DUPLICATE_JOB, Job.payload.is_not(None))
            )
        ).all()
    assert not [j for j in jobs if j.payload.get("org_id") == clinic.org_id]


async def test_an_unpaid_subscription_gives_way_to_the_paid_duplicate(
    db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    frozen_clock: FrozenClock,
) -> None:
    """The first tab's card needed more (subscription ``incomplete``, nothing paid), the
    second tab paid: the paid one is kept and the unpaid one canceled (nothing to refund)."""
    clinic = await _new_clinic(db)
    unpaid = await checkout_leaves(provider, clinic.org_id, card="4000000000000341")
    assert unpaid.status == "incomplete"
    paid = await checkout_leaves(provider, clinic.org_id)
    await _deliver(db, frozen_clock, _completed(clinic.org_id, unpaid))
    assert await _row(db, clinic.org_id) == (unpaid.id, "incomplete", 2)
    await _deliver(db, frozen_clock, _completed(clinic.org_id, paid))
    assert await _row(db, clinic.org_id) == (paid.id, "active", 2)
    assert await _remote_status(provider, paid.id) == "active"
    assert await _remote_status(provider, unpaid.id) in ("canceled", "incomplete_expired")
    assert stored("refund") == []
    audits = await _duplicate_audits(db, clinic.org_id)
    assert [(target, details["refunded_cents"]) for target, details in audits] == [(unpaid.id, 0)]


# --- Stripe failing while the duplicate is canceled -------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def faulty_stripe(localstripe: LocalStripe) -> AsyncIterator[StripeStandIn]:
    async with stripe_stand_in(localstripe.base_url, hold_seconds=ATTEMPT_TIMEOUT + 1.5) as s:
        yield s


async def test_stripe_failures_during_the_cancel_are_retried_by_the_job(
    db: Database,
    settings: Settings,
    localstripe: LocalStripe,
    faulty_stripe: StripeStandIn,
    frozen_clock: FrozenClock,
) -> None:
    """The refund times out after Stripe applied it, then the cancel meets a 500: the job
    fails twice and is retried with backoff; the third run cancels. One refund, one cancel,
    every retry of a step with the same key, one audit event and one email."""
    stripe_settings = settings.model_copy(
        update={
            "payment_provider": PaymentProvider.STRIPE,
            "stripe_api_key": localstripe.api_key,
            "stripe_api_base": faulty_stripe.url,
        }
    )
    runtime.configure(stripe_settings)
    cache.clear()
    stripe_dep = resilience.dependency(resilience.STRIPE)
    # No retry inside a call (the job retries) and a short timeout per attempt (the autouse
    # fixture restores the defaults).
    stripe_dep.configure(replace(stripe_dep.policy, timeout_seconds=ATTEMPT_TIMEOUT, attempts=1))
    provider = StripeProvider.from_settings(stripe_settings)
    try:
        clinic = await _new_clinic(db)
        first = await checkout_leaves(provider, clinic.org_id)
        second = await checkout_leaves(provider, clinic.org_id)
        await _deliver(db, frozen_clock, _completed(clinic.org_id, first))

        faulty_stripe.fail_next("POST", "/v1/refunds", "timeout")
        faulty_stripe.fail_next("DELETE", f"/v1/subscriptions/{second.id}", "500")
        started = time.perf_counter()
        await _deliver(db, frozen_clock, _completed(clinic.org_id, second))
        assert time.perf_counter() - started < ATTEMPT_TIMEOUT + 10

        async with db.session_scope(write=False) as session:
            job = await session.scalar(
                select(Job).where(Job.dedupe_key == f"{webhooks.DUPLICATE_JOB}:{second.id}")
            )
            assert job is not None
            assert (job.status, job.attempts) == ("done", 3)
        seen = [(s.method, s.path, s.outcome) for s in faulty_stripe.seen]
        assert ("POST", "/v1/refunds", "timeout") in seen
        deletes = [s for s in faulty_stripe.seen if s.method == "DELETE"]
        assert [s.outcome for s in deletes] == ["500", "forwarded"]
        assert len({s.key for s in deletes}) == 1
        assert deletes[0].key == f"aayu:duplicate:{second.id}:cancel"
        # The refund was applied by the attempt that timed out and not repeated after it.
        refunds = stored("refund")
        assert [r.amount for r in refunds] == [2 * SEAT_PRICE]
        assert set(faulty_stripe.keys_for("POST", "/v1/refunds")) <= {
            f"aayu:duplicate:{second.id}:refund:{second.latest_invoice}"
        }
        assert await _remote_status(provider, second.id) == "canceled"
        assert await _remote_status(provider, first.id) == "active"
        assert (await _row(db, clinic.org_id))[0] == first.id
        audits = await _duplicate_audits(db, clinic.org_id)
        assert [(target, details["refunded_cents"]) for target, details in audits] == [
            (second.id, 2 * SEAT_PRICE)
        ]
        assert len(await _duplicate_emails(db, clinic)) == 1
    finally:
        await provider.aclose()
        cache.clear()


# --- the race prevented earlier: one Checkout session for a double click ----------------


async def test_the_same_checkout_asked_twice_gets_one_stripe_session(
    db: Database,
    settings: Settings,
    stripe_hosted_pages: HostedPagesStandIn,
    frozen_clock: FrozenClock,
) -> None:
    """A double click (two identical requests at once) and a second tab a minute later send
    Stripe one idempotency key, so Stripe (here the fault stand-in's copy of its replay rule,
    in front of the Checkout stand-in) answers with the first session: one page, one possible
    completion. Other seats, or the next window, make a new session."""
    async with stripe_stand_in(stripe_hosted_pages.base_url) as replaying:
        stripe_settings = settings.model_copy(
            update={
                "payment_provider": PaymentProvider.STRIPE,
                "stripe_api_key": stripe_hosted_pages.api_key,
                "stripe_api_base": replaying.url,
                "public_url": "https://accounts.clinic-example.org",
            }
        )
        runtime.configure(stripe_settings)
        provider = StripeProvider.from_settings(stripe_settings)
        try:
            clinic = await _new_clinic(db)
            window = checkout.CHECKOUT_WINDOW_SECONDS
            frozen_clock.set(datetime.fromtimestamp(1_800_000_000 // window * window + 5, UTC))

            async def open_checkout(seats: int) -> str:
                async with db.session_scope() as session:
                    started = await checkout.create_checkout_session(
                        session,
                        provider,
                        actor=Actor.user(clinic.owner_id),
                        role="owner",
                        org_id=clinic.org_id,
                        plan_id="clinic_monthly",
                        seats=seats,
                    )
                    return started.url

            first = await open_checkout(2)
            frozen_clock.advance(60)
            again = await open_checkout(2)  # the second tab
            other = await open_checkout(3)
            frozen_clock.advance(checkout.CHECKOUT_WINDOW_SECONDS)
            later = await open_checkout(2)
            both = await asyncio.gather(open_checkout(4), open_checkout(4))  # a double click
        finally:
            await provider.aclose()
    assert again == first
    assert len({first, other, later}) == 3
    posts = [s for s in replaying.seen if s.path == "/v1/checkout/sessions"]
    keys = [s.key for s in posts]
    assert keys[0] == keys[1]
    assert [s.outcome for s in posts[:2]] == ["forwarded", "replayed"]
    assert len(set(keys[:4])) == 3
    # The double click: both requests carried one key (Stripe replays or, while the first is
    # in flight, answers 409 and the provider asks again).
    assert len(keys) == 6
    assert len(set(keys[4:])) == 1
    assert all(url.startswith("https://checkout.stripe.com/") for url in both)


async def test_a_duplicate_job_that_gave_up_runs_again_on_the_next_event(
    db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    frozen_clock: FrozenClock,
) -> None:
    """Stripe was down longer than the job's attempts: the job is dead and the duplicate
    still bills. Its next event (Stripe's webhook retry, a renewal) runs the same job again."""
    clinic = await _new_clinic(db)
    first = await checkout_leaves(provider, clinic.org_id)
    second = await checkout_leaves(provider, clinic.org_id)
    await _deliver(db, frozen_clock, _completed(clinic.org_id, first))
    completed = _completed(clinic.org_id, second)
    async with db.session_scope() as session:
        await webhooks.receive(session, completed)
    async with db.session_scope() as session:
        assert await webhooks.process(session, completed["id"], provider) == (
            "duplicate_cancel_queued"
        )
    dedupe_key = f"{webhooks.DUPLICATE_JOB}:{second.id}"
    async with db.session_scope() as session:
        job = await session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        assert job is not None
        job.status, job.attempts = "dead", 16  # what 16 failed attempts leave
    await drain_jobs(db, frozen_clock)
    assert await _remote_status(provider, second.id) == "active"

    await _deliver(db, frozen_clock, _subscription_event("customer.subscription.updated", second))
    assert await _remote_status(provider, second.id) == "canceled"
    assert [r.amount for r in stored("refund")] == [2 * SEAT_PRICE]
    async with db.session_scope(write=False) as session:
        jobs = (await session.scalars(select(Job).where(Job.dedupe_key == dedupe_key))).all()
        assert [(j.status, j.attempts) for j in jobs] == [("done", 1)]
    assert len(await _duplicate_audits(db, clinic.org_id)) == 1


async def test_both_checkouts_processed_at_the_same_moment_by_two_workers(
    own_db: Database,
    billing: runtime.BillingRuntime,
    provider: StripeProvider,
    frozen_clock: FrozenClock,
) -> None:
    """The two completions reach two workers at once, before the clinic has any row: one
    links its subscription, the other loses on the clinic's unique row, is retried, and its
    subscription is then the duplicate."""
    db = own_db
    clinic = await _new_clinic(db)
    first = await checkout_leaves(provider, clinic.org_id)
    second = await checkout_leaves(provider, clinic.org_id)
    for event in (_completed(clinic.org_id, first), _completed(clinic.org_id, second)):
        async with db.session_scope() as session:
            await webhooks.receive(session, event)
    workers = [Worker(db, batch_size=1, worker_id=f"w{n}") for n in (1, 2)]
    await asyncio.gather(*(worker.run_once() for worker in workers))
    await drain_jobs(db, frozen_clock)

    kept, _, _ = await _row(db, clinic.org_id)
    assert kept is not None
    assert kept in (first.id, second.id)
    duplicate = second.id if kept == first.id else first.id
    assert await _remote_status(provider, kept) == "active"
    assert await _remote_status(provider, duplicate) == "canceled"
    assert [(r.amount, r.metadata.get("aayu_subscription_id")) for r in stored("refund")] == [
        (2 * SEAT_PRICE, duplicate)
    ]
    audits = await _duplicate_audits(db, clinic.org_id)
    assert [target for target, _ in audits] == [duplicate]
