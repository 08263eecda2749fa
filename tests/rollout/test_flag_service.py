"""Flag administration: seeded flags, audited changes, versions, dependencies, schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database, create_engine
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.rollout.flag import loader, service
from aayu_accounts.rollout.flag.errors import FlagDependencyInvalid, FlagNotFound
from aayu_accounts.rollout.flag.plan import strategy_plan
from aayu_accounts.rollout.flag.schemas import FlagUpdate, TargetList
from aayu_accounts.rollout.flag.snapshot import BUILTIN_FLAGS
from tests.fixtures.database import make_settings

ADMIN = Actor.user("admin-1")


async def test_builtin_flags_are_off(seeded_db: Database) -> None:
    async with seeded_db.session_scope(write=False) as session:
        flags = {f.key: f for f in await service.list_flags(session)}
        snapshot = await loader.load_snapshot(session)
    assert set(BUILTIN_FLAGS) <= set(flags)
    assert not any(flags[key].enabled for key in BUILTIN_FLAGS)
    assert flags["BILLING"].requires == ["NEW_DATABASE"]
    assert snapshot.version >= 1
    assert not any(snapshot.evaluate_all(user_id="someone").values())


async def test_change_is_audited_with_old_and_new_and_bumps_version(seeded_db: Database) -> None:
    async with seeded_db.session_scope() as session:
        before = await loader.current_version(session)
        view = await service.update_flag(
            session,
            "NEW_AUTH",
            FlagUpdate(enabled=True, rollout_percent=10, allow=TargetList(user_ids=["beta-1"])),
            actor=ADMIN,
        )
        after = await loader.current_version(session)
        events = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == AuditAction.FLAG_UPDATED.value,
                    AuditEvent.target_id == "NEW_AUTH",
                )
            )
        ).all()
    assert view.enabled
    assert view.rollout_percent == 10
    assert after == before + 1
    assert len(events) == 1
    event = events[0]
    assert event.actor_id == "admin-1"
    assert event.details["old"]["enabled"] is False
    assert event.details["new"]["enabled"] is True
    assert event.details["new"]["rollout_percent"] == 10
    assert event.details["new"]["allow"]["user_ids"] == ["beta-1"]
    assert event.details["config_version"] == after


async def test_no_op_change_neither_audits_nor_bumps(seeded_db: Database) -> None:
    async with seeded_db.session_scope() as session:
        before = await loader.current_version(session)
        await service.update_flag(session, "FALLBACK", FlagUpdate(enabled=False), actor=ADMIN)
        assert await loader.current_version(session) == before


async def test_new_flag_created_and_dependencies_checked(seeded_db: Database) -> None:
    async with seeded_db.session_scope() as session:
        created = await service.update_flag(
            session, "NEW_REPORTS", FlagUpdate(requires=["NEW_DATABASE"]), actor=ADMIN
        )
        assert created.requires == ["NEW_DATABASE"]
        with pytest.raises(FlagDependencyInvalid):
            await service.update_flag(
                session, "NEW_DATABASE", FlagUpdate(requires=["NEW_REPORTS"]), actor=ADMIN
            )
        with pytest.raises(FlagDependencyInvalid):
            await service.update_flag(session, "X1", FlagUpdate(requires=["NOPE"]), actor=ADMIN)
        with pytest.raises(FlagNotFound):
            await service.get_flag(session, "NOPE")


async def test_strategy_plan_applied_by_the_scheduler_on_its_days(
    seeded_db: Database, frozen_clock: FrozenClock
) -> None:
    day_zero = datetime(2027, 1, 1, tzinfo=UTC)
    frozen_clock.set(day_zero)
    async with seeded_db.session_scope() as session:
        for key, steps in strategy_plan(day_zero).items():
            await service.update_flag(session, key, FlagUpdate(schedule=steps), actor=ADMIN)

    async def state_on(day: int, hours: int = 1) -> dict[str, tuple[bool, int]]:
        frozen_clock.set(day_zero + timedelta(days=day, hours=hours))
        async with seeded_db.session_scope() as session:
            await service.apply_due_steps(session)
            snapshot = await loader.load_snapshot(session)
        return {
            k: (snapshot.flags[k].enabled, snapshot.flags[k].rollout_percent)
            for k in ("NEW_AUTH", "NEW_DATABASE", "BILLING")
        }

    assert await state_on(14) == {
        "NEW_AUTH": (False, 0),
        "NEW_DATABASE": (False, 0),
        "BILLING": (False, 0),
    }
    assert (await state_on(15))["NEW_AUTH"] == (True, 10)
    assert await state_on(17) == {
        "NEW_AUTH": (True, 25),
        "NEW_DATABASE": (True, 25),
        "BILLING": (False, 0),
    }
    assert (await state_on(19))["NEW_DATABASE"] == (True, 50)
    assert await state_on(21) == {
        "NEW_AUTH": (True, 100),
        "NEW_DATABASE": (True, 100),
        "BILLING": (True, 100),
    }
    async with seeded_db.session_scope(write=False) as session:
        schedule = (await service.get_flag(session, "NEW_AUTH")).schedule
        scheduler_events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.actor_id == "flag-scheduler"))
        ).all()
    assert [s.outcome for s in schedule] == ["applied"] * 4
    assert len(scheduler_events) == 4 + 3 + 1


async def test_steps_not_yet_due_are_not_applied(
    seeded_db: Database, frozen_clock: FrozenClock
) -> None:
    day_zero = frozen_clock.now()
    async with seeded_db.session_scope() as session:
        await service.update_flag(
            session,
            "NEW_AUTH",
            FlagUpdate(schedule=strategy_plan(day_zero)["NEW_AUTH"]),
            actor=ADMIN,
        )
        assert await service.apply_due_steps(session) == []


async def test_migration_seeds_the_five_flags(fresh_database_url: str, tmp_path: Path) -> None:
    database = Database(create_engine(make_settings(fresh_database_url, tmp_path)))
    try:
        async with database.session_scope(write=False) as session:
            flags = {f.key: f for f in await service.list_flags(session)}
            version = await loader.current_version(session)
    finally:
        await database.dispose()
    assert set(flags) == set(BUILTIN_FLAGS)
    assert version == 1
    assert not any(f.enabled for f in flags.values())
    assert flags["FALLBACK"].rollout_percent == 100
    assert flags["NEW_AUTH"].bucket_group == flags["NEW_DATABASE"].bucket_group


async def test_every_field_of_a_flag_is_audited_and_stamped(
    seeded_db: Database, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(datetime.now(UTC) + timedelta(days=1))  # after anything already stored
    async with seeded_db.session_scope() as session:
        before = await service.get_flag(session, "NEW_DATABASE")
        view = await service.update_flag(
            session,
            "NEW_DATABASE",
            FlagUpdate(
                description="Documents from PostgreSQL",
                owner="platform-team",
                deny=TargetList(user_ids=["u-9"], org_ids=["clinic-7"]),
                allow=TargetList(org_ids=["clinic-1"]),
            ),
            actor=ADMIN,
        )
        event = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == AuditAction.FLAG_UPDATED.value,
                    AuditEvent.target_id == "NEW_DATABASE",
                )
                .order_by(AuditEvent.occurred_at.desc())
            )
        ).first()
    assert event is not None
    assert (view.description, view.owner) == ("Documents from PostgreSQL", "platform-team")
    assert view.updated_at > before.updated_at
    assert event.details["old"]["owner"] == before.owner
    assert event.details["new"]["owner"] == "platform-team"
    assert event.details["new"]["description"] == "Documents from PostgreSQL"
    assert event.details["new"]["deny"] == {"user_ids": ["u-9"], "org_ids": ["clinic-7"]}
    assert event.details["new"]["allow"] == {"user_ids": [], "org_ids": ["clinic-1"]}


async def test_a_rollback_voids_the_plan_so_the_scheduler_never_turns_flags_back_on(
    seeded_db: Database, frozen_clock: FrozenClock
) -> None:
    day_zero = datetime(2027, 1, 1, tzinfo=UTC)
    frozen_clock.set(day_zero + timedelta(days=17, hours=1))
    async with seeded_db.session_scope() as session:
        for key, steps in strategy_plan(day_zero).items():
            await service.update_flag(session, key, FlagUpdate(schedule=steps), actor=ADMIN)
        await service.apply_due_steps(session)  # days 15 and 17: 25 %
        _, voided = await service.apply_rollback(session, actor=ADMIN)
    assert voided == 2 + 2 + 1  # NEW_AUTH 19/21, NEW_DATABASE 19/21, BILLING 21
    frozen_clock.set(day_zero + timedelta(days=22))
    async with seeded_db.session_scope() as session:
        assert await service.apply_due_steps(session) == []
        snapshot = await loader.load_snapshot(session)
    assert not any(snapshot.flags[k].enabled for k in ("NEW_AUTH", "NEW_DATABASE", "BILLING"))
