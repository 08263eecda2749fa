"""Subscriptions: subscribe, preview and apply plan/seat changes, cancel at period end, resume,
change the payment method, renew, and apply the provider's state (from our calls or webhooks).

Only ``owner`` and ``billing`` change billing (``Permission.SUBSCRIPTION_MANAGE``); ``admin``
reads. Every change is audited with the old and new amounts. The provider is called before
anything is written, so a declined card leaves nothing behind (402 ``payment_failed``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.billing import dunning
from aayu_accounts.billing.entitlement.cache import current as entitlement_cache
from aayu_accounts.billing.errors import (
    InvalidSeats,
    NoSubscription,
    PaymentFailed,
    PaymentMethodRequired,
    SeatsBelowUsage,
    SubscriptionExists,
    SubscriptionNotChangeable,
    UnknownPlan,
)
from aayu_accounts.billing.invoice import repository as invoice_repository
from aayu_accounts.billing.invoice import service as invoices
from aayu_accounts.billing.payment_provider.base import (
    PaymentDeclined,
    PaymentProvider,
    PriceSpec,
    SubscriptionState,
)
from aayu_accounts.billing.payment_provider.local import add_interval
from aayu_accounts.billing.plan import repository as plans
from aayu_accounts.billing.subscription import repository
from aayu_accounts.billing.subscription.proration import ChangePreview, preview_change
from aayu_accounts.identity.permissions import Permission, require
from aayu_accounts.kit import clock
from aayu_accounts.kit.ids import new_id
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.plan import Plan
from aayu_accounts.models.subscription import Subscription

CHANGEABLE = frozenset({"active", "trialing", "past_due"})
# Used to order states of equal age (events sharing Stripe's ``created`` second): the later
# stage of the lifecycle wins, and canceled is final.
STATUS_RANK = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "incomplete_expired": 5,
    "canceled": 6,
}


def price_of(plan: Plan) -> PriceSpec:
    return PriceSpec(
        plan_id=plan.id,
        name=plan.name,
        amount_cents=plan.amount_cents,
        currency=plan.currency,
        interval=plan.interval,
        per_seat=plan.per_seat,
        stripe_price_id=plan.stripe_price_id,
    )


def total_of(plan: Plan, seats: int) -> int:
    return plan.amount_cents * (seats if plan.per_seat else 1)


def monthly_of(plan: Plan, seats: int) -> int:
    """Monthly-normalized amount (MRR contribution) in minor units."""
    total = total_of(plan, seats)
    return round(total / 12) if plan.interval == "year" else total


def state_of(sub: Subscription) -> SubscriptionState:
    return SubscriptionState(
        provider_subscription_id=sub.provider_subscription_id or "",
        customer_id=sub.provider_customer_id or "",
        status=sub.status,
        plan_id=sub.plan_id,
        seats=sub.seats,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        cancel_at_period_end=sub.cancel_at_period_end,
        trial_end=sub.trial_end,
        canceled_at=sub.canceled_at,
        payment_method=sub.payment_method,
    )


def row_of(
    state: SubscriptionState,
    *,
    org_id: str,
    plan_id: str,
    provider: str,
    provider_version: int,
    payment_method: str | None,
) -> Subscription:
    """A new clinic row holding the provider's state of a subscription (``state_of``'s
    inverse). ``payment_method`` is the caller's choice: a row linked from a webhook starts
    without one, and the state applied right after sets it."""
    return Subscription(
        org_id=org_id,
        plan_id=plan_id,
        status=state.status,
        seats=state.seats,
        current_period_start=state.current_period_start,
        current_period_end=state.current_period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        trial_end=state.trial_end,
        provider=provider,
        provider_customer_id=state.customer_id,
        provider_subscription_id=state.provider_subscription_id,
        payment_method=payment_method,
        provider_version=provider_version,
        dunning_stage="none",
    )


def _invalidate(session: AsyncSession, org_id: str) -> None:
    # Here at once, and on every instance after the commit (Redis pub/sub when configured).
    entitlement_cache().mark(session, org_id)


async def _plan(session: AsyncSession, plan_id: str) -> Plan:
    plan = await plans.get(session, plan_id)
    if plan is None or not plan.active:
        raise UnknownPlan(f"No active plan {plan_id!r}.")
    return plan


def _check_seats(plan: Plan, seats: int) -> None:
    if seats < 1:
        raise InvalidSeats("At least one seat.")
    if not plan.per_seat and seats != 1:
        raise InvalidSeats(f"{plan.name} is a single-seat plan.")
    if plan.max_seats is not None and seats > plan.max_seats:
        raise InvalidSeats(f"{plan.name} allows at most {plan.max_seats} seats.")


async def plan_for_new_subscription(
    session: AsyncSession, org_id: str, plan_id: str, seats: int
) -> Plan:
    """The active plan a clinic subscribes to with ``seats`` (here and through Checkout).
    Raises UnknownPlan/InvalidSeats (422), SeatsBelowUsage (409)."""
    plan = await _plan(session, plan_id)
    _check_seats(plan, seats)
    in_use = await repository.seated_count(session, org_id)
    if plan.per_seat and seats < in_use:
        raise SeatsBelowUsage(f"{in_use} active clinicians need at least {in_use} seats.")
    return plan


async def get_subscription(session: AsyncSession, org_id: str, role: str) -> Subscription:
    require(role, Permission.SUBSCRIPTION_READ)
    sub = await repository.for_org(session, org_id)
    if sub is None:
        raise NoSubscription()
    return sub


async def create_subscription(
    session: AsyncSession,
    provider: PaymentProvider,
    *,
    actor: Actor,
    role: str,
    org_id: str,
    plan_id: str,
    seats: int,
    payment_method: str | None,
    trial: bool = True,
) -> Subscription:
    """Subscribe the clinic. Raises SubscriptionExists (409), UnknownPlan/InvalidSeats (422),
    PaymentMethodRequired (422), PaymentFailed (402, nothing created), SeatsBelowUsage (409)."""
    require(role, Permission.SUBSCRIPTION_MANAGE)
    existing = await repository.for_org(session, org_id)
    if existing is not None and existing.status not in ("canceled", "incomplete_expired"):
        raise SubscriptionExists()
    plan = await plan_for_new_subscription(session, org_id, plan_id, seats)
    trial_days = plan.trial_days if trial and existing is None else 0
    if payment_method is None and trial_days == 0:
        raise PaymentMethodRequired()
    now = clock.now()
    op_id = new_id()
    try:
        state = await provider.create_subscription(
            org_id=org_id,
            price=price_of(plan),
            seats=seats,
            payment_method=payment_method,
            trial_days=trial_days,
            now=now,
            op_id=op_id,
        )
    except PaymentDeclined as declined:
        await record(
            session,
            AuditAction.PAYMENT_FAILED,
            actor=actor,
            org_id=org_id,
            target_type="subscription",
            outcome="failure",
            details={"plan_id": plan.id, "seats": seats, "decline_code": declined.decline_code},
        )
        raise PaymentFailed(
            "The card was declined.", extra={"decline_code": declined.decline_code}
        ) from None
    if existing is not None:
        # A canceled subscription is replaced: one row per clinic.
        await session.delete(existing)
        await session.flush()
    sub = row_of(
        state,
        org_id=org_id,
        plan_id=plan.id,
        provider=provider.name,
        provider_version=int(now.timestamp()),
        payment_method=state.payment_method,
    )
    try:
        async with session.begin_nested():
            session.add(sub)
    except IntegrityError:
        # A concurrent subscribe for the same clinic won the unique org row. (With Stripe the
        # loser's remote subscription comes back by webhook as a duplicate, and the
        # billing.duplicate_subscription job cancels and refunds it.)
        raise SubscriptionExists() from None
    for invoice_state in state.invoices:
        await invoices.upsert(session, invoice_state, org_id=org_id, subscription_id=sub.id)
    await record(
        session,
        AuditAction.SUBSCRIPTION_CREATED,
        actor=actor,
        org_id=org_id,
        target_type="subscription",
        target_id=sub.id,
        details={
            "plan_id": plan.id,
            "seats": seats,
            "status": sub.status,
            "old_amount_cents": 0,
            "new_amount_cents": total_of(plan, seats),
            "currency": plan.currency,
            "trial_days": trial_days,
        },
    )
    _invalidate(session, org_id)
    return sub


@dataclass(frozen=True)
class PlannedChange:
    sub: Subscription
    old_plan: Plan
    new_plan: Plan
    seats: int
    preview: ChangePreview


async def plan_change(
    session: AsyncSession, *, org_id: str, plan_id: str | None, seats: int | None
) -> PlannedChange:
    sub = await repository.for_org(session, org_id)
    if sub is None:
        raise NoSubscription()
    if sub.status not in CHANGEABLE:
        raise SubscriptionNotChangeable(f"A {sub.status} subscription cannot be changed.")
    old_plan = await plans.get(session, sub.plan_id)
    assert old_plan is not None
    new_plan = await _plan(session, plan_id) if plan_id else old_plan
    new_seats = seats if seats is not None else sub.seats
    if not new_plan.per_seat:
        new_seats = 1 if seats is None else new_seats
    _check_seats(new_plan, new_seats)
    in_use = await repository.seated_count(session, org_id)
    if new_plan.per_seat and new_seats < in_use:
        raise SeatsBelowUsage(
            f"{in_use} active clinicians hold seats; deactivate some first.",
            extra={"seats_in_use": in_use},
        )
    now = clock.now()
    preview = preview_change(
        currency=new_plan.currency,
        old_total_cents=total_of(old_plan, sub.seats),
        new_total_cents=total_of(new_plan, new_seats),
        old_label=f"{old_plan.name} x {sub.seats}",
        new_label=f"{new_plan.name} x {new_seats}",
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
        new_period_end=add_interval(now, new_plan.interval),
        now=now,
        interval_changes=new_plan.interval != old_plan.interval,
        trialing=sub.status == "trialing",
    )
    return PlannedChange(sub, old_plan, new_plan, new_seats, preview)


async def preview(
    session: AsyncSession, *, role: str, org_id: str, plan_id: str | None, seats: int | None
) -> PlannedChange:
    """The invoice preview of a change: nothing is written, nothing is sent to the provider."""
    require(role, Permission.SUBSCRIPTION_MANAGE)
    return await plan_change(session, org_id=org_id, plan_id=plan_id, seats=seats)


async def change_subscription(
    session: AsyncSession,
    provider: PaymentProvider,
    *,
    actor: Actor,
    role: str,
    org_id: str,
    plan_id: str | None = None,
    seats: int | None = None,
    cancel_at_period_end: bool | None = None,
    payment_method: str | None = None,
) -> tuple[Subscription, ChangePreview | None]:
    """Apply a plan/seat change (prorated, invoiced at once), cancel at period end or resume,
    or replace the payment method (which retries an open invoice). Raises as documented on
    the endpoint; a declined proration charge changes nothing (402)."""
    require(role, Permission.SUBSCRIPTION_MANAGE)
    sub = await repository.for_org(session, org_id, lock=True)
    if sub is None:
        raise NoSubscription()
    now = clock.now()
    applied: ChangePreview | None = None
    try:
        if payment_method is not None:
            old_status = sub.status
            state = await provider.update_payment_method(
                state_of(sub), payment_method=payment_method, now=now, op_id=new_id()
            )
            sub.payment_method = state.payment_method
            await record(
                session,
                AuditAction.PAYMENT_METHOD_UPDATED,
                actor=actor,
                org_id=org_id,
                target_type="subscription",
                target_id=sub.id,
                details={"payment_method_id": payment_method},
            )
            await apply_state(session, sub, state, version=int(now.timestamp()), fetched=True)
            if old_status != sub.status and sub.status == "active":
                for invoice in await _open_invoices(session, sub.id):
                    await invoices.mark_paid(session, invoice, now)
        if plan_id is not None or seats is not None:
            planned = await plan_change(session, org_id=org_id, plan_id=plan_id, seats=seats)
            if planned.new_plan.id != sub.plan_id or planned.seats != sub.seats:
                state = await provider.change_subscription(
                    state_of(sub),
                    price=price_of(planned.new_plan),
                    seats=planned.seats,
                    proration_cents=planned.preview.amount_due_now_cents,
                    now=now,
                    op_id=new_id(),
                )
                old_amount = total_of(planned.old_plan, sub.seats)
                old_seats, old_plan_id = sub.seats, sub.plan_id
                if planned.preview.resets_period and provider.name == "local":
                    state = _reset_period(state, now, planned.new_plan.interval)
                await apply_state(session, sub, state, version=int(now.timestamp()), fetched=True)
                action = (
                    AuditAction.PLAN_CHANGED
                    if old_plan_id != sub.plan_id
                    else AuditAction.SEATS_CHANGED
                )
                await record(
                    session,
                    action,
                    actor=actor,
                    org_id=org_id,
                    target_type="subscription",
                    target_id=sub.id,
                    details={
                        "old_plan_id": old_plan_id,
                        "new_plan_id": sub.plan_id,
                        "old_seats": old_seats,
                        "new_seats": sub.seats,
                        "old_amount_cents": old_amount,
                        "new_amount_cents": total_of(planned.new_plan, sub.seats),
                        "prorated_cents": planned.preview.amount_due_now_cents,
                        "currency": planned.new_plan.currency,
                    },
                )
                applied = planned.preview
        if cancel_at_period_end is not None and cancel_at_period_end != sub.cancel_at_period_end:
            if sub.status not in CHANGEABLE:
                raise SubscriptionNotChangeable(f"A {sub.status} subscription cannot be changed.")
            state = await provider.set_cancel_at_period_end(
                state_of(sub), cancel=cancel_at_period_end, op_id=new_id()
            )
            await apply_state(session, sub, state, version=int(now.timestamp()), fetched=True)
            await record(
                session,
                AuditAction.SUBSCRIPTION_CANCELED
                if cancel_at_period_end
                else AuditAction.SUBSCRIPTION_RESUMED,
                actor=actor,
                org_id=org_id,
                target_type="subscription",
                target_id=sub.id,
                details={
                    "cancel_at_period_end": cancel_at_period_end,
                    "period_end": sub.current_period_end.isoformat(),
                },
            )
    except PaymentDeclined as declined:
        raise PaymentFailed(
            "The card was declined.", extra={"decline_code": declined.decline_code}
        ) from None
    _invalidate(session, org_id)
    return sub, applied


def _reset_period(state: SubscriptionState, now: datetime, interval: str) -> SubscriptionState:
    return replace(state, current_period_start=now, current_period_end=add_interval(now, interval))


async def _open_invoices(session: AsyncSession, subscription_id: str) -> list[Invoice]:
    return list(await invoice_repository.open_for_subscription(session, subscription_id))


async def apply_state(
    session: AsyncSession,
    sub: Subscription,
    state: SubscriptionState,
    *,
    version: int,
    fetched: bool,
) -> bool:
    """Write the provider's state to ``sub`` unless it is older than what we hold.

    ``fetched`` means the state was just read from (or returned by) the provider, so it is
    the newest there is. Otherwise (a webhook payload) it applies only when its ``version``
    (Stripe's event ``created``) is newer, or equally old and later in the lifecycle. Returns
    whether it applied. Status changes drive dunning; invoices in the state are stored.
    """
    if not fetched:
        if version < sub.provider_version:
            return False
        if version == sub.provider_version and STATUS_RANK.get(state.status, 0) < STATUS_RANK.get(
            sub.status, 0
        ):
            return False
        if sub.status == "canceled" and state.status != "canceled":
            return False
    old_status = sub.status
    plan = await plans.get(session, state.plan_id) or await plans.by_stripe_price(
        session, state.plan_id
    )
    if plan is not None:
        sub.plan_id = plan.id
    sub.status = state.status
    sub.seats = state.seats
    sub.current_period_start = state.current_period_start
    sub.current_period_end = state.current_period_end
    sub.cancel_at_period_end = state.cancel_at_period_end
    sub.trial_end = state.trial_end
    sub.canceled_at = state.canceled_at or (clock.now() if state.status == "canceled" else None)
    if state.payment_method:
        sub.payment_method = state.payment_method
    sub.provider_version = max(sub.provider_version, version)
    # A trial that became active; also when the trialing events arrived after the active one
    # (out of order) and were never applied: the state's trial_end says there was a trial.
    had_trial = old_status == "trialing" or state.trial_end is not None
    if had_trial and sub.status == "active" and sub.converted_from_trial_at is None:
        sub.converted_from_trial_at = clock.now()
    amount, currency = 0, plan.currency if plan else "usd"
    for invoice_state in state.invoices:
        await invoices.upsert(session, invoice_state, org_id=sub.org_id, subscription_id=sub.id)
        amount = invoice_state.amount_cents
    if old_status != sub.status:
        await record(
            session,
            AuditAction.SUBSCRIPTION_STATUS_CHANGED,
            actor=Actor.system("billing"),
            org_id=sub.org_id,
            target_type="subscription",
            target_id=sub.id,
            details={"old_status": old_status, "new_status": sub.status},
        )
        await dunning.on_status_change(
            session, sub, old_status, now=clock.now(), amount_cents=amount, currency=currency
        )
    await session.flush()
    _invalidate(session, sub.org_id)
    return True


async def renew_due(session: AsyncSession, provider: PaymentProvider) -> list[str]:
    """Renew (or end) every local subscription whose period has ended; returns their ids.

    Stripe renews its own subscriptions and tells us by webhook, so only the local provider's
    are renewed here. Runs until each subscription's period is current (a server that was
    down for two periods catches up).
    """
    now = clock.now()
    renewed: list[str] = []
    for sub_id in await repository.due_for_renewal(session, now, provider.name):
        sub = await session.get(Subscription, sub_id)
        if sub is None:
            continue
        plan = await plans.get(session, sub.plan_id)
        assert plan is not None
        guard = 0
        while sub.current_period_end <= now and sub.status in CHANGEABLE and guard < 36:
            guard += 1
            old_amount = total_of(plan, sub.seats)
            state = await provider.renew(
                state_of(sub), price=price_of(plan), now=now, op_id=new_id()
            )
            await apply_state(session, sub, state, version=int(now.timestamp()), fetched=True)
            await record(
                session,
                AuditAction.SUBSCRIPTION_RENEWED,
                actor=Actor.system("billing"),
                org_id=sub.org_id,
                target_type="subscription",
                target_id=sub.id,
                details={
                    "status": sub.status,
                    "old_amount_cents": old_amount,
                    "new_amount_cents": total_of(plan, sub.seats),
                    "currency": plan.currency,
                },
            )
        renewed.append(sub.id)
    return renewed
