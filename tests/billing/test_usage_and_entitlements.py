"""Usage is counted once per event id (also under concurrent delivery); entitlement decisions
and their reasons; seat enforcement."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aayu_accounts.billing.entitlement import seats
from aayu_accounts.billing.entitlement.cache import cache
from aayu_accounts.billing.entitlement.service import check_entitlement, invalidate
from aayu_accounts.billing.errors import SeatLimitReached, UnknownOrganization
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.usage.service import UnknownMetric, record_usage, usage_summary
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock
from tests.billing import as_owner
from tests.billing.factories import Clinic, add_member, make_clinic, seed_default_plans


async def _subscribed(
    db: Database,
    provider: LocalProvider,
    *,
    seats_: int = 1,
    clinicians: int = 1,
    plan: str = "clinic_monthly",
) -> Clinic:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session, clinicians=clinicians)
        await as_owner.subscribe(
            session,
            provider,
            clinic,
            plan_id=plan,
            seats=seats_,
            payment_method="pm_card_visa",
            trial=False,
        )
    return clinic


def _clinician(clinic: Clinic) -> str:
    return next(u for u, r in clinic.members.items() if r == "clinician")


async def test_same_event_three_times_counts_once(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    clinic = await _subscribed(db, local_provider)
    user = _clinician(clinic)
    results = []
    for _ in range(3):
        async with db.session_scope() as session:
            results.append(
                await record_usage(
                    session,
                    event_id="evt-note-1",
                    org_id=clinic.org_id,
                    user_id=user,
                    metric="notes",
                    quantity=1,
                    occurred_at=clock.now(),
                )
            )
    assert results == [True, False, False]
    async with db.session_scope(write=False) as session:
        summary = await usage_summary(session, clinic.org_id)
        assert summary.metrics["notes"].used == 1
        assert summary.metrics["notes"].included == 400
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=user, feature="notes"
        )
        assert decision.remaining == 399


async def test_concurrent_deliveries_count_once(
    own_db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    db = own_db
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
    user = _clinician(clinic)
    when = clock.now()

    async def deliver(event_id: str) -> bool:
        async with db.session_scope() as session:
            return await record_usage(
                session,
                event_id=event_id,
                org_id=clinic.org_id,
                user_id=user,
                metric="notes",
                quantity=2,
                occurred_at=when,
            )

    stored = await asyncio.gather(*(deliver("evt-concurrent") for _ in range(3)))
    assert sorted(stored) == [False, False, True]
    stored = await asyncio.gather(*(deliver(f"evt-{i % 2}") for i in range(6)))
    assert stored.count(True) == 2
    async with db.session_scope(write=False) as session:
        from aayu_accounts.billing.usage import repository

        total = await repository.used(
            session,
            clinic.org_id,
            "notes",
            when - timedelta(seconds=1),
            when + timedelta(seconds=1),
        )
    assert total == 2 * 3


async def test_usage_refuses_unknown_metric_and_org(db: Database, billing: BillingRuntime) -> None:
    async with db.session_scope() as session:
        clinic = await make_clinic(session)
        with pytest.raises(UnknownMetric):
            await record_usage(
                session,
                event_id="e1",
                org_id=clinic.org_id,
                user_id=clinic.owner_id,
                metric="tokens",
                quantity=1,
                occurred_at=clock.now(),
            )
        with pytest.raises(UnknownOrganization):
            await record_usage(
                session,
                event_id="e2",
                org_id="no-such-org",
                user_id=clinic.owner_id,
                metric="notes",
                quantity=1,
                occurred_at=clock.now(),
            )


async def test_quota_exhausted_and_cache_follows_usage(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider, frozen_clock: FrozenClock
) -> None:
    clinic = await _subscribed(db, local_provider)
    user = _clinician(clinic)
    async with db.session_scope() as session:
        # Warm the cache, then use 399 of 400 notes: the cached snapshot follows commits.
        assert (
            await check_entitlement(session, org_id=clinic.org_id, user_id=user, feature="notes")
        ).remaining == 400
    async with db.session_scope() as session:
        await record_usage(
            session,
            event_id="bulk",
            org_id=clinic.org_id,
            user_id=user,
            metric="notes",
            quantity=399,
            occurred_at=clock.now(),
        )
    assert cache.get(clinic.org_id, 60) is not None
    async with db.session_scope() as session:
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=user, feature="notes"
        )
        assert (decision.allowed, decision.remaining) == (True, 1)
        await record_usage(
            session,
            event_id="last",
            org_id=clinic.org_id,
            user_id=user,
            metric="notes",
            quantity=1,
            occurred_at=clock.now(),
        )
    async with db.session_scope() as session:
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=user, feature="notes"
        )
        assert (decision.allowed, decision.reason, decision.remaining) == (
            False,
            "quota_exhausted",
            0,
        )
        # Templates are not metered.
        assert (
            await check_entitlement(
                session, org_id=clinic.org_id, user_id=user, feature="templates"
            )
        ).allowed


async def test_reasons_no_subscription_not_member_feature(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
        user = _clinician(clinic)
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=user, feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "no_subscription")
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id="stranger", feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "not_a_member")
    solo = await _subscribed(db, local_provider, plan="solo_monthly")
    async with db.session_scope() as session:
        decision = await check_entitlement(
            session, org_id=solo.org_id, user_id=_clinician(solo), feature="team"
        )
        assert (decision.allowed, decision.reason) == (False, "feature_not_in_plan")


async def test_seat_limit(
    db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    clinic = await _subscribed(db, local_provider, seats_=2, clinicians=2)
    async with db.session_scope() as session:
        usage = await seats.seat_usage(session, clinic.org_id)
        assert (usage.seats, usage.used, usage.available) == (2, 2, 0)
        with pytest.raises(SeatLimitReached) as raised:
            await seats.ensure_seat_available(session, org_id=clinic.org_id, role="clinician")
        assert raised.value.code == "seat_limit"
        assert raised.value.status == 409
        await seats.ensure_seat_available(session, org_id=clinic.org_id, role="billing")
        # A clinician added past the seats (e.g. by an older flow) gets seat_limit; the
        # earlier clinicians keep their seats.
        newest = await add_member(session, clinic, "clinician")
        invalidate(clinic.org_id)
        decision = await check_entitlement(
            session, org_id=clinic.org_id, user_id=newest, feature="notes"
        )
        assert (decision.allowed, decision.reason) == (False, "seat_limit")
        assert (
            await check_entitlement(
                session, org_id=clinic.org_id, user_id=_clinician(clinic), feature="notes"
            )
        ).allowed
        # Raising the seat count by the owner admits them.
        await as_owner.change(session, local_provider, clinic, seats=3)
        assert (
            await check_entitlement(session, org_id=clinic.org_id, user_id=newest, feature="notes")
        ).allowed
