"""The whole subscription lifecycle with the embedded ``local`` provider, at the service level:
subscribe, decline, seat change with proration, renewal, failed renewal -> past_due -> grace
-> restricted -> paid -> active, cancel at period end, resume."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.service import Actor
from aayu_accounts.billing import dunning
from aayu_accounts.billing.entitlement.service import check_entitlement
from aayu_accounts.billing.errors import (
    PaymentFailed,
    SeatsBelowUsage,
    SubscriptionExists,
)
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.subscription import service
from aayu_accounts.db import Database
from aayu_accounts.identity.errors import InsufficientRole
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.subscription import Subscription
from tests.billing import as_owner
from tests.billing.factories import add_member, make_clinic, seed_default_plans


async def _count(db: Database, model: type[object]) -> int:
    async with db.session_scope(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _emails(session: AsyncSession, template: str) -> int:
    """How many emails of one template are queued."""
    query = select(func.count()).select_from(OutboxEmail).where(OutboxEmail.template == template)
    return int(await session.scalar(query) or 0)


@pytest.mark.parametrize(
    "card", ["pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"]
)
async def test_declined_card_creates_nothing(
    db: Database,
    billing: BillingRuntime,
    local_provider: LocalProvider,
    frozen_clock: FrozenClock,
    card: str,
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
    invoices_before = await _count(db, Invoice)
    with pytest.raises(PaymentFailed) as raised:
        async with db.session_scope() as session:
            await as_owner.subscribe(
                session,
                local_provider,
                clinic,
                plan_id="clinic_monthly",
                seats=1,
                payment_method=card,
            )
    assert raised.value.status == 402
    assert raised.value.code == "payment_failed"
    async with db.session_scope(write=False) as session:
        assert (
            await session.scalar(select(Subscription).where(Subscription.org_id == clinic.org_id))
            is None
        )
    assert await _count(db, Invoice) == invoices_before


async def test_authentication_required_is_incomplete(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider, frozen_clock: FrozenClock
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
        sub = await as_owner.subscribe(
            session,
            local_provider,
            clinic,
            plan_id="solo_monthly",
            seats=1,
            payment_method="pm_card_authenticationRequired",
        )
        assert sub.status == "incomplete"
        clinician = next(u for u, r in clinic.members.items() if r == "clinician")
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=clinician, feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "subscription_incomplete")


async def test_only_owner_and_billing_change_billing(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
        for role in ("admin", "clinician", "auditor"):
            with pytest.raises(InsufficientRole):
                await service.create_subscription(
                    session,
                    local_provider,
                    actor=Actor.user(clinic.owner_id),
                    role=role,
                    org_id=clinic.org_id,
                    plan_id="clinic_monthly",
                    seats=1,
                    payment_method="pm_card_visa",
                )


async def test_full_lifecycle_local(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider, frozen_clock: FrozenClock
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session, clinicians=2)
        billing_user = await add_member(session, clinic, "billing")
        clinicians = [u for u, r in clinic.members.items() if r == "clinician"]

        # Subscribe: 2 seats on the monthly clinic plan, paid at once.
        sub = await as_owner.subscribe(
            session,
            local_provider,
            clinic,
            plan_id="clinic_monthly",
            seats=2,
            payment_method="pm_card_visa",
            trial=False,
        )
        assert sub.status == "active"
        with pytest.raises(SubscriptionExists):
            await as_owner.subscribe(
                session,
                local_provider,
                clinic,
                plan_id="clinic_monthly",
                seats=2,
                payment_method="pm_card_visa",
            )
        first = (
            await session.scalars(select(Invoice).where(Invoice.org_id == clinic.org_id))
        ).all()
        assert [(i.status, i.amount_cents) for i in first] == [("paid", 2 * 3900)]
        for user in clinicians:
            decision = await check_entitlement(
                session, org_id=clinic.org_id, user_id=user, feature="notes"
            )
            assert decision.allowed
            assert decision.remaining == 2 * 400
        # Seats can't go below active clinicians.
        with pytest.raises(SeatsBelowUsage):
            await service.preview(
                session, role="billing", org_id=clinic.org_id, plan_id=None, seats=1
            )

    # Halfway through the period: 2 -> 4 seats, previewed, then applied with proration.
    period = sub.current_period_end - sub.current_period_start
    frozen_clock.advance(period / 2)
    async with db.session_scope() as session:
        planned = await service.preview(
            session, role="billing", org_id=clinic.org_id, plan_id=None, seats=4
        )
        expected = round(2 * 3900 / 2)
        assert planned.preview.amount_due_now_cents == expected
        updated, applied = await service.change_subscription(
            session,
            local_provider,
            actor=Actor.user(billing_user),
            role="billing",
            org_id=clinic.org_id,
            seats=4,
        )
        assert applied is not None
        assert applied.amount_due_now_cents == expected
        assert updated.seats == 4
        proration = await session.scalar(
            select(Invoice).where(
                Invoice.org_id == clinic.org_id, Invoice.billing_reason == "subscription_update"
            )
        )
        assert proration is not None
        assert proration.amount_cents == expected
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "billing:seats:changed", AuditEvent.org_id == clinic.org_id
            )
        )
        assert audit is not None
        assert audit.details["old_amount_cents"] == 7800
        assert audit.details["new_amount_cents"] == 15600

    # Renewal at period end (kit.clock): a new period and a paid cycle invoice.
    frozen_clock.set(updated.current_period_end + timedelta(seconds=1))
    async with db.session_scope() as session:
        assert await service.renew_due(session, local_provider)
        sub = await service.get_subscription(session, clinic.org_id, "admin")
        assert sub.status == "active"
        assert sub.current_period_start == updated.current_period_end
        cycle = (
            await session.scalars(
                select(Invoice).where(
                    Invoice.org_id == clinic.org_id, Invoice.billing_reason == "subscription_cycle"
                )
            )
        ).all()
        assert [(i.status, i.amount_cents) for i in cycle] == [("paid", 4 * 3900)]

    # The card starts failing: the next renewal leaves the subscription past_due.
    async with db.session_scope() as session:
        await as_owner.change(
            session, local_provider, clinic, payment_method="pm_card_chargeCustomerFail"
        )
    frozen_clock.set(sub.current_period_end + timedelta(seconds=1))
    async with db.session_scope() as session:
        await service.renew_due(session, local_provider)
        sub = await service.get_subscription(session, clinic.org_id, "owner")
        assert sub.status == "past_due"
        assert sub.dunning_stage == "grace"
        # The owner and the billing member.
        assert await _emails(session, "billing_payment_failed") == 2
        # In the grace period notes still work.
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=clinicians[0], feature="notes"
        )
        assert decision.allowed

    # Grace over: restricted (notes refused; sign-in and export still allowed).
    frozen_clock.advance(timedelta(days=7))
    async with db.session_scope() as session:
        assert await dunning.advance(session, frozen_clock.now()) == [clinic.org_id]
        assert await dunning.advance(session, frozen_clock.now()) == []  # the email goes once
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=clinicians[0], feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "past_due_grace_over")
        for feature in ("sign_in", "data_export"):
            assert (
                await check_entitlement(
                    session, org_id=clinic.org_id, user_id=clinicians[0], feature=feature
                )
            ).allowed
        assert await _emails(session, "billing_restricted") == 2

    # Paid with a working card: active at once, access restored.
    async with db.session_scope() as session:
        sub, _ = await as_owner.change(
            session, local_provider, clinic, payment_method="pm_card_mastercard"
        )
        assert sub.status == "active"
        assert sub.past_due_since is None
        assert sub.dunning_stage == "none"
        open_left = await session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.org_id == clinic.org_id, Invoice.status == "open")
        )
        assert open_left == 0
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=clinicians[0], feature="notes"
        )
        assert decision.allowed
        assert await _emails(session, "billing_recovered") == 2

    # Cancel at period end, resume, cancel again; the period end cancels it.
    async with db.session_scope() as session:
        sub, _ = await as_owner.change(session, local_provider, clinic, cancel_at_period_end=True)
        assert sub.cancel_at_period_end
        assert sub.status == "active"
        sub, _ = await as_owner.change(session, local_provider, clinic, cancel_at_period_end=False)
        assert not sub.cancel_at_period_end
        sub, _ = await as_owner.change(session, local_provider, clinic, cancel_at_period_end=True)
    frozen_clock.set(sub.current_period_end + timedelta(seconds=1))
    async with db.session_scope() as session:
        await service.renew_due(session, local_provider)
        sub = await service.get_subscription(session, clinic.org_id, "owner")
        assert sub.status == "canceled"
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=clinicians[0], feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "no_subscription")


async def test_trial_converts_at_its_end(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider, frozen_clock: FrozenClock
) -> None:
    from aayu_accounts.billing.revenue.service import build_report
    from tests.billing.factories import seed_default_plans as seed

    async with db.session_scope() as session:
        await seed(session, trials=True)
        clinic = await make_clinic(session)
        sub = await as_owner.subscribe(
            session,
            local_provider,
            clinic,
            plan_id="solo_monthly",
            seats=1,
            payment_method="pm_card_visa",
        )
        assert sub.status == "trialing"
        assert sub.trial_end is not None
        invoice = await session.scalar(select(Invoice).where(Invoice.org_id == clinic.org_id))
        assert invoice is not None
        assert (invoice.status, invoice.amount_cents) == ("paid", 0)
        report = await build_report(session)
        assert report.mrr_cents.get("usd", 0) == 0  # trials are not revenue
    frozen_clock.set(sub.trial_end + timedelta(seconds=1))
    async with db.session_scope() as session:
        await service.renew_due(session, local_provider)
        sub = await service.get_subscription(session, clinic.org_id, "owner")
        assert sub.status == "active"
        assert sub.converted_from_trial_at is not None
        report = await build_report(session)
        assert report.trial_conversion == 1.0
        assert report.mrr_cents["usd"] == 4900


def test_local_provider_is_refused_in_production(settings: object) -> None:
    from aayu_accounts.billing.payment_provider.factory import (
        LocalProviderInProduction,
        get_provider,
    )
    from aayu_accounts.config import Environment, Settings

    assert isinstance(settings, Settings)
    production = settings.model_copy(update={"env": Environment.PRODUCTION})
    with pytest.raises(LocalProviderInProduction):
        get_provider(production)
    assert "AAYU_PAYMENT_PROVIDER=local" in " ".join(production.production_problems())
