"""Stripe webhooks: verify, store in the inbox, and (in a job) apply.

Receiving (request path, fast): the ``Stripe-Signature`` is verified on the raw bytes with
stripe's own verifier (300 s tolerance; any of several ``v1`` signatures, and any of our
configured endpoint secrets while one is rolled), the event is inserted into the inbox unless
its id is known, and a job is enqueued. A redelivery is acknowledged and ignored.

Processing (job): events arrive out of order and often share a ``created`` second. With the
Stripe provider the subscription is re-read from Stripe, so the newest state always wins;
otherwise (recorded payloads, no provider) the payload's state is applied only when it is not
older than what we hold (``Subscription.provider_version`` = the newest event ``created``),
ties broken by lifecycle order. Invoice statuses only move forward.

A completed Checkout (``checkout.session.completed``) links what the customer did on Stripe's
page to the clinic named in its metadata: a new subscription (created from Stripe's own copy,
whichever of this event and ``customer.subscription.created`` comes first) or a new default
payment method (setup mode; not when a newer default is already known).
``customer.subscription.trial_will_end`` emails the owners and billing members once per event
(the inbox stores each event once, and the email is queued in the transaction that marks it
processed), and only while the subscription is still trialing.

Duplicates: two Checkouts completed for one clinic (two tabs, a double click) leave two live
Stripe subscriptions, and the clinic has one row. When an event names a live subscription of a
clinic whose row holds another one, both are re-read from Stripe: if the row's subscription
ended there (its own events are still on the way) the new one replaces it; if it is live, the
new one is a duplicate and a ``billing.duplicate_subscription`` job (one per Stripe
subscription id, however often its events come) cancels it at Stripe and refunds its payment
(:func:`cancel_duplicate`), audits ``billing:subscription:duplicate_canceled`` and emails the
owners and billing members. A row whose subscription is still ``incomplete`` (unpaid) gives
way to a paid or trialing newcomer instead, and the unpaid one is canceled. A subscription
that already ended is never canceled or refunded by this.
"""

from __future__ import annotations

import json
from typing import Any

import stripe
import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.billing import dunning
from aayu_accounts.billing.invoice import service as invoices
from aayu_accounts.billing.payment_provider.base import (
    PaymentDeclined,
    PaymentProvider,
    SubscriptionState,
)
from aayu_accounts.billing.payment_provider.stripe import (
    ENDED,
    field_of,
    invoice_state,
    subscription_state,
)
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.stripe_webhook import repository
from aayu_accounts.billing.stripe_webhook.errors import EventNotReady, SignatureInvalid
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.subscription.service import apply_state, row_of, state_of
from aayu_accounts.db import JOBS_ENQUEUED
from aayu_accounts.jobs import enqueue
from aayu_accounts.kit import clock
from aayu_accounts.models.job import Job
from aayu_accounts.models.subscription import Subscription

log = structlog.get_logger(__name__)

PROCESS_JOB = "billing.stripe_event"
DUPLICATE_JOB = "billing.duplicate_subscription"
TOLERANCE_SECONDS = 300

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
    }
)
INVOICE_EVENTS = frozenset(
    {
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.finalized",
    }
)
OTHER_EVENTS = frozenset({"customer.updated", "payment_method.attached", "payment_method.detached"})
CHECKOUT_EVENTS = frozenset({"checkout.session.completed"})
HANDLED = SUBSCRIPTION_EVENTS | INVOICE_EVENTS | OTHER_EVENTS | CHECKOUT_EVENTS


def verify(raw_body: bytes, signature_header: str | None, secrets: list[str]) -> dict[str, Any]:
    """The event as JSON, or :class:`SignatureInvalid`. Verified on the raw bytes: a
    re-serialized body would not match (the classic webhook bug)."""
    if not signature_header or not secrets:
        raise SignatureInvalid()
    try:
        payload = raw_body.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SignatureInvalid() from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        try:
            event = json.loads(payload)
        except ValueError:
            raise SignatureInvalid("Not a Stripe event.") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise SignatureInvalid("Not a Stripe event.")
        if not isinstance(event.get("data"), dict) or not isinstance(
            event["data"].get("object"), dict
        ):
            raise SignatureInvalid("Not a Stripe event.")
        return event
    raise SignatureInvalid()


async def receive(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Store a verified event and enqueue its processing; False for a duplicate."""
    stored = await repository.store(
        session,
        event_id=event["id"],
        type_=str(event.get("type", ""))[:100],
        created=int(event.get("created", 0)),
        payload=event,
    )
    if stored:
        await enqueue(session, PROCESS_JOB, {"event_id": event["id"]})
        # Receipt is audited here, its effects by the job that applies them.
        await record(
            session,
            AuditAction.WEBHOOK_RECEIVED,
            actor=Actor.service("stripe"),
            target_type="stripe_event",
            target_id=str(event["id"]),
            details={"type": str(event.get("type", ""))[:100]},
        )
    return stored


def _object(event: dict[str, Any]) -> Any:
    return stripe.StripeObject.construct_from(event["data"]["object"], None)


def _metadata_org(obj: Any) -> str | None:
    for holder in (obj, _nested(obj, "parent", "subscription_details")):
        if holder is None:
            continue
        metadata = field_of(holder, "metadata")
        if metadata is not None and "aayu_org_id" in metadata:
            return str(metadata["aayu_org_id"])
    return None


def _nested(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None or isinstance(obj, str) or name not in obj:
            return None
        obj = obj[name]
    return obj


def _invoice_subscription_id(invoice: Any) -> str | None:
    direct = field_of(invoice, "subscription")
    nested = _nested(invoice, "parent", "subscription_details", "subscription")
    value = direct or nested
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.id)


def _stripe(provider: PaymentProvider | None) -> PaymentProvider | None:
    """The provider when it is Stripe: only Stripe can be asked for a subscription's state."""
    return provider if provider is not None and provider.name == "stripe" else None


async def _refetch(
    session: AsyncSession,
    sub: Subscription,
    provider: PaymentProvider | None,
    subscription_id: str,
    created: int,
) -> bool:
    """Apply Stripe's current state of ``sub`` (the newest state always wins over a payload).
    False without Stripe to ask, or when Stripe no longer has the subscription."""
    stripe_provider = _stripe(provider)
    if stripe_provider is None:
        return False
    fresh = await stripe_provider.fetch_subscription(subscription_id)
    if fresh is None:
        return False
    await apply_state(session, sub, fresh, version=created, fetched=True)
    return True


async def process(session: AsyncSession, event_id: str, provider: PaymentProvider | None) -> str:
    """Apply one stored event (idempotent); returns what was done."""
    stored = await repository.get(session, event_id)
    if stored is None:
        return "missing"
    if stored.status == "processed":
        return "already_processed"
    event = stored.payload
    kind = stored.type
    outcome = "ignored"
    if kind in SUBSCRIPTION_EVENTS:
        outcome = await _subscription_event(session, event, stored.created, provider)
    elif kind in INVOICE_EVENTS:
        outcome = await _invoice_event(session, event, stored.created, provider)
    elif kind == "customer.updated":
        outcome = await _customer_updated(session, event, stored.created)
    elif kind in ("payment_method.attached", "payment_method.detached"):
        outcome = await _payment_method_event(session, event, kind)
    elif kind in CHECKOUT_EVENTS:
        outcome = await _checkout_completed(session, event, stored.created, provider)
    stored.status = "processed"
    stored.processed_at = clock.now()
    await record(
        session,
        AuditAction.WEBHOOK_PROCESSED,
        actor=Actor.system("stripe"),
        target_type="stripe_event",
        target_id=event_id,
        details={"type": kind, "outcome": outcome},
    )
    await session.flush()
    return outcome


async def _subscription_for(
    session: AsyncSession, obj: Any, state_org: str | None, provider: PaymentProvider | None
) -> Subscription | str:
    sub = await subscriptions.by_provider_id(session, obj.id)
    if sub is not None:
        return sub
    return await _link_new(session, subscription_state(obj), state_org, provider)


async def _link_new(
    session: AsyncSession,
    state: SubscriptionState,
    state_org: str | None,
    provider: PaymentProvider | None,
) -> Subscription | str:
    """A row for a subscription Stripe created for a clinic of ours (metadata ``aayu_org_id``:
    our commit failed after Stripe's, or the clinic subscribed through Checkout); else why
    not: ``not_ours``, ``unknown_plan``, ``conflict`` (another live one, no Stripe to ask),
    ``duplicate_cancel_queued`` or ``duplicate_ended`` (see the module's docstring)."""
    if state_org is None or not await subscriptions.org_exists(session, state_org):
        return "not_ours"
    existing = await subscriptions.for_org(session, state_org, lock=True)
    if existing is not None and existing.status not in ENDED:
        verdict = await _second_subscription(session, existing, state, provider)
        if verdict != "replace":
            return verdict
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    plan = await plans.get(session, state.plan_id) or await plans.by_stripe_price(
        session, state.plan_id
    )
    if plan is None:
        return "unknown_plan"
    sub = row_of(
        state,
        org_id=state_org,
        plan_id=plan.id,
        provider="stripe",
        provider_version=0,
        payment_method=None,
    )
    session.add(sub)
    await session.flush()
    return sub


async def _second_subscription(
    session: AsyncSession,
    existing: Subscription,
    state: SubscriptionState,
    provider: PaymentProvider | None,
) -> str:
    """``existing`` (live in our row) and ``state`` (another subscription for the same clinic):
    ``replace`` when the newcomer takes the row, else what was done about the newcomer."""
    existing_id = existing.provider_subscription_id if existing.provider == "stripe" else None
    if provider is None or provider.name != "stripe" or not existing_id:
        # Without Stripe to ask (or a row Stripe does not hold), a stray one must not replace
        # the clinic's subscription.
        log.warning("stripe.subscription_conflict", org_id=existing.org_id)
        return "conflict"
    # Decide on Stripe's current state of both, never on a payload that may be old.
    candidate = await provider.fetch_subscription(state.provider_subscription_id) or state
    if candidate.status in ENDED:
        # Ended already (ours canceled by a previous job, or by the clinic): nothing to do,
        # and an ended subscription never displaces a live one.
        return "duplicate_ended"
    current = await _live_at_stripe(session, provider, existing, existing_id)
    if current is None:
        # Our row is behind: its subscription ended (the event saying so is on its way) and
        # the clinic subscribed again. The newcomer is the clinic's subscription.
        return "replace"
    if current.status == "incomplete" and candidate.status in ("active", "trialing"):
        # The row's subscription was never paid; the newcomer was: keep the paid one.
        await queue_duplicate_cancel(session, existing.org_id, existing_id, keep=candidate)
        return "replace"
    await queue_duplicate_cancel(
        session, existing.org_id, candidate.provider_subscription_id, keep=current
    )
    return "duplicate_cancel_queued"


async def _live_at_stripe(
    session: AsyncSession, provider: PaymentProvider, row: Subscription, subscription_id: str
) -> SubscriptionState | None:
    """Stripe's current state of the clinic's row (``subscription_id``), or None when it has
    ended there; an ended state Stripe still holds is applied to the row first."""
    current = await provider.fetch_subscription(subscription_id)
    if current is None or current.status in ENDED:
        if current is not None:
            await apply_state(session, row, current, version=0, fetched=True)
        return None
    return current


async def queue_duplicate_cancel(
    session: AsyncSession, org_id: str, provider_subscription_id: str, *, keep: SubscriptionState
) -> bool:
    """Queue the cancellation of a clinic's duplicate subscription: one job per Stripe
    subscription id, however often its events are delivered. True when newly queued."""
    payload = {"org_id": org_id, "subscription_id": provider_subscription_id}
    dedupe_key = f"{DUPLICATE_JOB}:{provider_subscription_id}"
    queued = await enqueue(session, DUPLICATE_JOB, payload, dedupe_key=dedupe_key)
    if queued is None:
        # Its job gave up (Stripe down for hours) and the duplicate still bills: the same job
        # runs again (one row per subscription, so never two at once).
        revived = await session.execute(
            update(Job)
            .where(Job.dedupe_key == dedupe_key, Job.status == "dead")
            .values(status="queued", attempts=0, run_at=clock.now(), finished_at=None)
        )
        queued = dedupe_key if getattr(revived, "rowcount", 0) == 1 else None
        if queued is not None:
            session.info[JOBS_ENQUEUED] = True  # the worker is woken after the commit
    if queued is not None:
        log.warning(
            "stripe.duplicate_subscription",
            org_id=org_id,
            subscription_id=provider_subscription_id,
            kept_subscription_id=keep.provider_subscription_id,
        )
    return queued is not None


async def cancel_duplicate(
    session: AsyncSession, provider: PaymentProvider, *, org_id: str, subscription_id: str
) -> str:
    """The ``billing.duplicate_subscription`` job: cancel ``subscription_id`` at Stripe unless
    it is (or has become) the clinic's subscription. Raises while Stripe is unreachable (the
    job is retried; every Stripe step is keyed by the subscription id and skipped once done)."""
    current = await subscriptions.for_org(session, org_id, lock=True)
    if current is None or not current.provider_subscription_id:
        return "no_subscription"
    if current.provider_subscription_id == subscription_id:
        return "kept"
    kept = await _live_at_stripe(session, provider, current, current.provider_subscription_id)
    if kept is None:
        # The clinic's subscription ended meanwhile: the other one is its subscription now.
        candidate = await provider.fetch_subscription(subscription_id)
        if candidate is None or candidate.status in ENDED:
            return "both_ended"
        linked = await _link_new(session, candidate, org_id, provider)
        if isinstance(linked, str):
            return linked
        await apply_state(session, linked, candidate, version=0, fetched=True)
        return "linked_instead"
    result = await provider.cancel_duplicate_subscription(
        subscription_id,
        keep_subscription_id=kept.provider_subscription_id,
        op_id=f"duplicate:{subscription_id}",
    )
    if not result.canceled:
        return "already_ended"
    await record(
        session,
        AuditAction.SUBSCRIPTION_DUPLICATE_CANCELED,
        actor=Actor.system("billing"),
        org_id=org_id,
        target_type="stripe_subscription",
        target_id=subscription_id,
        details={
            "kept_subscription_id": kept.provider_subscription_id,
            "refunded_cents": result.refunded_cents,
            "currency": result.currency,
        },
    )
    plan = await plans.get(session, current.plan_id)
    await dunning.notify_billing_members(
        session,
        current,
        "billing_duplicate_canceled",
        plan_name=plan.name if plan else current.plan_id,
        refunded=dunning.money(result.refunded_cents, result.currency)
        if result.refunded_cents
        else "",
    )
    await session.flush()
    return "canceled"


async def _subscription_event(
    session: AsyncSession, event: dict[str, Any], created: int, provider: PaymentProvider | None
) -> str:
    obj = _object(event)
    sub = await _subscription_for(session, obj, _metadata_org(obj), provider)
    if sub in ("duplicate_cancel_queued", "duplicate_ended"):
        return str(sub)
    if isinstance(sub, str):
        # Our own create may not have committed yet: let the job retry.
        raise EventNotReady(event["id"])
    outcome = "refetched" if await _refetch(session, sub, provider, obj.id, created) else ""
    if not outcome:
        state = subscription_state(obj)
        if event["type"] == "customer.subscription.deleted":
            state = state.__class__(**{**state.__dict__, "status": "canceled"})
        applied = await apply_state(session, sub, state, version=created, fetched=False)
        outcome = "applied" if applied else "stale"
    if event["type"] == "customer.subscription.trial_will_end":
        outcome += await _trial_will_end(session, sub)
    return outcome


async def _trial_will_end(session: AsyncSession, sub: Subscription) -> str:
    """Stripe's three-days notice. Sent only while the trial is really ending: a late event
    about a trial that already converted or was canceled sends nothing."""
    now = clock.now()
    if sub.status != "trialing" or sub.trial_end is None or sub.trial_end <= now:
        return ",trial_notice_skipped"
    plan = await plans.get(session, sub.plan_id)
    amount = plan.amount_cents * (sub.seats if plan.per_seat else 1) if plan else 0
    currency = plan.currency if plan else "usd"
    sent = await dunning.notify_billing_members(
        session,
        sub,
        "billing_trial_will_end",
        plan_name=plan.name if plan else sub.plan_id,
        trial_end=sub.trial_end.strftime("%Y-%m-%d %H:%M UTC"),
        amount=dunning.money(amount, currency),
        has_payment_method="yes" if sub.payment_method else "",
    )
    return f",trial_notice_sent:{sent}"


async def _invoice_event(
    session: AsyncSession, event: dict[str, Any], created: int, provider: PaymentProvider | None
) -> str:
    obj = _object(event)
    subscription_id = _invoice_subscription_id(obj)
    sub = await subscriptions.by_provider_id(session, subscription_id) if subscription_id else None
    org_id = sub.org_id if sub is not None else _metadata_org(obj)
    if org_id is None or not await subscriptions.org_exists(session, org_id):
        raise EventNotReady(event["id"])
    state = invoice_state(obj)
    invoice, previous = await invoices.upsert(
        session, state, org_id=org_id, subscription_id=sub.id if sub else None
    )
    if previous != invoice.status:
        if invoice.status == "paid":
            await record(
                session,
                AuditAction.INVOICE_PAID,
                actor=Actor.system("stripe"),
                org_id=org_id,
                target_type="invoice",
                target_id=invoice.id,
                details={"amount_cents": invoice.amount_cents, "currency": invoice.currency},
            )
        elif event["type"] == "invoice.payment_failed":
            await record(
                session,
                AuditAction.PAYMENT_FAILED,
                actor=Actor.system("stripe"),
                org_id=org_id,
                target_type="invoice",
                target_id=invoice.id,
                outcome="failure",
                details={"amount_cents": invoice.amount_cents, "currency": invoice.currency},
            )
    if sub is not None:
        # The subscription's status follows its invoices: re-read it rather than guess.
        await _refetch(session, sub, provider, sub.provider_subscription_id or "", created)
    return "invoice_" + invoice.status


async def _customer_updated(session: AsyncSession, event: dict[str, Any], created: int) -> str:
    obj = _object(event)
    sub = await subscriptions.by_customer_id(session, obj.id)
    if sub is None:
        org_id = _metadata_org(obj)
        ours = org_id is not None and await subscriptions.org_exists(session, org_id)
        if ours and org_id is not None and await subscriptions.for_org(session, org_id) is None:
            # Ours, but the subscription event has not been applied yet: retry later.
            raise EventNotReady(event["id"])
        return "unknown_customer"
    if created < sub.payment_method_version:
        return "stale"
    default = _nested(obj, "invoice_settings", "default_payment_method")
    sub.payment_method_version = created
    if isinstance(default, str) and default != sub.payment_method:
        sub.payment_method = default
        await session.flush()
        return "payment_method_updated"
    await session.flush()
    return "unchanged"


async def _payment_method_event(session: AsyncSession, event: dict[str, Any], kind: str) -> str:
    obj = _object(event)
    previous = _nested(event, "data", "previous_attributes", "customer")
    customer = field_of(obj, "customer")
    customer_id = customer or previous
    if not isinstance(customer_id, str):
        return "no_customer"
    sub = await subscriptions.by_customer_id(session, customer_id)
    if sub is None:
        return "unknown_customer"
    # A detach clears only the method it names, and does not age the default: the customer
    # event that sets the next default may be older than the detach of the previous one.
    if kind == "payment_method.detached" and sub.payment_method == obj.id:
        sub.payment_method = None
        await session.flush()
        return "payment_method_removed"
    return "noted"


def _id_of(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.id)


async def _checkout_completed(
    session: AsyncSession, event: dict[str, Any], created: int, provider: PaymentProvider | None
) -> str:
    """Link a completed Checkout to its clinic (idempotent; safe in any order with the
    subscription and customer events it causes)."""
    obj = _object(event)
    org_id = field_of(obj, "client_reference_id") or _metadata_org(obj)
    if org_id is None or not await subscriptions.org_exists(session, str(org_id)):
        return "not_ours"
    org_id = str(org_id)
    if field_of(obj, "status") not in (None, "complete"):
        return "not_complete"
    mode = field_of(obj, "mode")
    stripe_provider = _stripe(provider)
    if mode == "subscription":
        outcome = await _checkout_subscription(session, obj, org_id, created, stripe_provider)
    elif mode == "setup":
        outcome = await _checkout_setup(
            session, obj, org_id, str(event["id"]), created=created, provider=stripe_provider
        )
    else:
        return "ignored_mode"
    if outcome in ("subscription_linked", "payment_method_updated"):
        await record(
            session,
            AuditAction.CHECKOUT_COMPLETED,
            actor=Actor.system("stripe"),
            org_id=org_id,
            target_type="stripe_checkout_session",
            target_id=str(obj.id),
            details={"mode": str(mode), "outcome": outcome},
        )
    return outcome


async def _checkout_subscription(
    session: AsyncSession, obj: Any, org_id: str, created: int, provider: PaymentProvider | None
) -> str:
    subscription_id = _id_of(field_of(obj, "subscription"))
    if subscription_id is None:
        return "no_subscription"
    if await subscriptions.by_provider_id(session, subscription_id) is not None:
        # customer.subscription.created came first (or this is a redelivery): nothing to add.
        return "already_linked"
    if provider is None:
        # Without Stripe to ask, the subscription's state comes with its own
        # customer.subscription.created event, which links it by the same metadata.
        return "awaiting_subscription_event"
    state = await provider.fetch_subscription(subscription_id)
    if state is None:
        raise EventNotReady(subscription_id)
    sub = await _link_new(session, state, org_id, provider)
    if isinstance(sub, str):
        return "conflict" if sub in ("not_ours", "unknown_plan") else sub
    await apply_state(session, sub, state, version=created, fetched=True)
    return "subscription_linked"


async def _checkout_setup(
    session: AsyncSession,
    obj: Any,
    org_id: str,
    event_id: str,
    *,
    created: int,
    provider: PaymentProvider | None,
) -> str:
    sub = await subscriptions.for_org(session, org_id)
    customer = _id_of(field_of(obj, "customer"))
    if sub is None or customer is None or sub.provider_customer_id != customer:
        return "unknown_customer"
    if created < sub.payment_method_version:
        # A newer default (portal, API) is already known: the older choice must not win.
        return "stale"
    intent = field_of(obj, "setup_intent")
    payment_method: str | None = None
    if intent is not None and not isinstance(intent, str):
        payment_method = _id_of(field_of(intent, "payment_method"))
    elif isinstance(intent, str) and provider is not None:
        payment_method = await provider.setup_payment_method(intent)
    if payment_method is None:
        return "no_payment_method"
    sub.payment_method_version = created
    if sub.payment_method == payment_method:
        await session.flush()
        return "unchanged"
    if provider is None:
        sub.payment_method = payment_method
    else:
        # Make it the default at Stripe (Checkout only saves it) and retry an open invoice,
        # as a new card given through the API does. The key is the event's: a re-run of this
        # job repeats nothing at Stripe.
        try:
            state = await provider.update_payment_method(
                state_of(sub), payment_method=payment_method, now=clock.now(), op_id=event_id
            )
        except PaymentDeclined:
            # Saved but the open invoice was declined again: Stripe keeps retrying.
            sub.payment_method = payment_method
        else:
            await apply_state(session, sub, state, version=created, fetched=True)
    await record(
        session,
        AuditAction.PAYMENT_METHOD_UPDATED,
        actor=Actor.system("stripe"),
        org_id=org_id,
        target_type="subscription",
        target_id=sub.id,
        details={"payment_method_id": payment_method, "via": "checkout"},
    )
    await session.flush()
    return "payment_method_updated"
