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
"""

from __future__ import annotations

import json
from typing import Any

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.billing.invoice import service as invoices
from aayu_accounts.billing.payment_provider.base import PaymentProvider
from aayu_accounts.billing.payment_provider.stripe import (
    field_of,
    invoice_state,
    subscription_state,
)
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.stripe_webhook import repository
from aayu_accounts.billing.stripe_webhook.errors import EventNotReady, SignatureInvalid
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.subscription.service import apply_state
from aayu_accounts.jobs import enqueue
from aayu_accounts.kit import clock
from aayu_accounts.models.subscription import Subscription

log = structlog.get_logger(__name__)

PROCESS_JOB = "billing.stripe_event"
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
HANDLED = SUBSCRIPTION_EVENTS | INVOICE_EVENTS | OTHER_EVENTS


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
    session: AsyncSession, obj: Any, state_org: str | None
) -> Subscription | None:
    sub = await subscriptions.by_provider_id(session, obj.id)
    if sub is not None:
        return sub
    if state_org is None or not await subscriptions.org_exists(session, state_org):
        return None
    existing = await subscriptions.for_org(session, state_org)
    if existing is not None and existing.status not in ("canceled", "incomplete_expired"):
        # The clinic already has another live subscription: do not let a stray one replace it.
        log.warning("stripe.subscription_conflict", org_id=state_org)
        return None
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    state = subscription_state(obj)
    plan = await plans.get(session, state.plan_id) or await plans.by_stripe_price(
        session, state.plan_id
    )
    if plan is None:
        return None
    sub = Subscription(
        org_id=state_org,
        plan_id=plan.id,
        status=state.status,
        seats=state.seats,
        current_period_start=state.current_period_start,
        current_period_end=state.current_period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        trial_end=state.trial_end,
        provider="stripe",
        provider_customer_id=state.customer_id,
        provider_subscription_id=state.provider_subscription_id,
        provider_version=0,
        dunning_stage="none",
    )
    session.add(sub)
    await session.flush()
    return sub


async def _subscription_event(
    session: AsyncSession, event: dict[str, Any], created: int, provider: PaymentProvider | None
) -> str:
    obj = _object(event)
    sub = await _subscription_for(session, obj, _metadata_org(obj))
    if sub is None:
        # Our own create may not have committed yet: let the job retry.
        raise EventNotReady(event["id"])
    if provider is not None and provider.name == "stripe":
        fresh = await provider.fetch_subscription(obj.id)
        if fresh is not None:
            await apply_state(session, sub, fresh, version=created, fetched=True)
            return "refetched"
    state = subscription_state(obj)
    if event["type"] == "customer.subscription.deleted":
        state = state.__class__(**{**state.__dict__, "status": "canceled"})
    applied = await apply_state(session, sub, state, version=created, fetched=False)
    return "applied" if applied else "stale"


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
    if sub is not None and provider is not None and provider.name == "stripe":
        # The subscription's status follows its invoices: re-read it rather than guess.
        fresh = await provider.fetch_subscription(sub.provider_subscription_id or "")
        if fresh is not None:
            await apply_state(session, sub, fresh, version=created, fetched=True)
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
