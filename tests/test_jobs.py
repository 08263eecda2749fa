"""Durable jobs: dropped on rollback, run after commit, retried with backoff, then dead."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.jobs import (
    LeaderElector,
    Scheduler,
    Worker,
    backoff_seconds,
    enqueue,
    job_handler,
    queue_stats,
)
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models import Job

calls: list[dict[str, Any]] = []
failures_left: dict[str, int] = {}


@job_handler("test.record")
async def record_call(session: AsyncSession, payload: dict[str, Any]) -> None:
    calls.append(payload)


@job_handler("test.flaky", max_attempts=3)
async def flaky(session: AsyncSession, payload: dict[str, Any]) -> None:
    key = str(payload["key"])
    if failures_left.get(key, 0) > 0:
        failures_left[key] -= 1
        raise ConnectionError("dependency down")
    calls.append(payload)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    failures_left.clear()


async def _statuses(db: Database) -> list[str]:
    async with db.session_scope(write=False) as session:
        return list((await session.scalars(select(Job.status).order_by(Job.created_at))).all())


async def test_job_enqueued_in_a_rolled_back_transaction_never_exists(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.session_scope() as session:
            await enqueue(session, "test.record", {"n": 1})
            raise Boom
    assert await _statuses(db) == []
    assert await Worker(db).run_once() == 0
    assert calls == []


async def test_committed_job_runs_once(db: Database) -> None:
    async with db.session_scope() as session:
        await enqueue(session, "test.record", {"n": 2})
    assert await Worker(db).run_once() == 1
    assert calls == [{"n": 2}]
    assert await _statuses(db) == ["done"]
    assert await Worker(db).run_once() == 0


async def test_commit_wakes_the_worker(db: Database) -> None:
    woken: list[bool] = []
    db.on_jobs_committed(lambda: woken.append(True))
    async with db.session_scope() as session:
        await enqueue(session, "test.record", {})
    async with db.session_scope() as session:
        session.info["unrelated"] = True
    assert woken == [True]


async def test_failing_job_is_retried_with_backoff_then_succeeds(
    db: Database, frozen_clock: FrozenClock
) -> None:
    failures_left["a"] = 1
    async with db.session_scope() as session:
        await enqueue(session, "test.flaky", {"key": "a"})
    worker = Worker(db)
    await worker.run_once()
    assert calls == []
    assert await _statuses(db) == ["queued"]
    assert await worker.run_once() == 0, "not due before its backoff"
    frozen_clock.advance(timedelta(hours=2))
    await worker.run_once()
    assert calls == [{"key": "a"}]
    assert await _statuses(db) == ["done"]


async def test_job_is_dead_after_max_attempts(db: Database, frozen_clock: FrozenClock) -> None:
    failures_left["b"] = 99
    outcomes: list[tuple[str, str]] = []
    async with db.session_scope() as session:
        await enqueue(session, "test.flaky", {"key": "b"})
    worker = Worker(db, on_finished=lambda kind, outcome: outcomes.append((kind, outcome)))
    for _ in range(5):
        await worker.run_once()
        frozen_clock.advance(timedelta(hours=2))
    assert await _statuses(db) == ["dead"]
    assert outcomes == [("test.flaky", "retry"), ("test.flaky", "retry"), ("test.flaky", "dead")]
    async with db.session_scope(write=False) as session:
        job = (await session.scalars(select(Job))).one()
        assert job.attempts == 3
        assert job.last_error == "ConnectionError"  # the type only, never the message


async def test_dedupe_key_enqueues_once(db: Database) -> None:
    async with db.session_scope() as session:
        first = await enqueue(session, "test.record", {"n": 1}, dedupe_key="once")
        second = await enqueue(session, "test.record", {"n": 1}, dedupe_key="once")
    assert first is not None
    assert second is None
    assert len(await _statuses(db)) == 1


async def test_job_of_a_crashed_worker_runs_again_after_its_lease(
    db: Database, frozen_clock: FrozenClock
) -> None:
    async with db.session_scope() as session:
        await enqueue(session, "test.record", {"n": 3})
    crashed = Worker(db, worker_id="crashed", lease_seconds=60)
    claimed = await crashed._claim()  # claimed, then the process "dies"
    assert len(claimed) == 1
    survivor = Worker(db, worker_id="survivor")
    assert await survivor.run_once() == 0, "the lease still holds"
    frozen_clock.advance(timedelta(seconds=61))
    assert await survivor.run_once() == 1
    assert calls == [{"n": 3}]


async def test_unknown_job_kind_is_refused_at_enqueue(db: Database) -> None:
    async with db.session_scope() as session:
        with pytest.raises(LookupError):
            await enqueue(session, "test.no-such-kind", {})


async def test_queue_stats(db: Database, frozen_clock: FrozenClock) -> None:
    async with db.session_scope() as session:
        await enqueue(session, "test.record", {})
    frozen_clock.advance(30)
    async with db.session_scope(write=False) as session:
        stats = await queue_stats(session)
    assert stats["depth"] == {"queued": 1}
    assert stats["oldest_queued_age_s"] == pytest.approx(30, abs=1)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 8):
        ceiling = min(3600.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= backoff_seconds(attempt) <= ceiling
    assert backoff_seconds(40) <= 3600.0


async def test_only_one_leader_at_a_time(committing_db: Database) -> None:
    first = LeaderElector(committing_db, holder="one", lease_seconds=30)
    second = LeaderElector(committing_db, holder="two", lease_seconds=30)
    try:
        assert await first.try_acquire() is True
        assert await second.try_acquire() is False
        if committing_db.dialect == "postgresql":
            # PostgreSQL: a session-level advisory lock, no lease row.
            async with committing_db.session_scope(write=False) as session:
                held = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                    )
                )
                leases = await session.scalar(text("SELECT count(*) FROM leader_leases"))
            assert held == 1
            assert leases == 0
        assert await first.try_acquire() is True, "renewal keeps leadership"
        await first.release()
        assert await second.try_acquire() is True
        assert await first.try_acquire() is False
    finally:
        await first.release()
        await second.release()


async def test_scheduler_runs_duties_only_on_the_leader(committing_db: Database) -> None:
    ran: list[str] = []

    async def duty(_db: Database) -> None:
        ran.append("duty")

    leader = Scheduler(LeaderElector(committing_db, holder="leader"))
    follower = Scheduler(LeaderElector(committing_db, holder="follower"))
    for scheduler in (leader, follower):
        scheduler.every(3600, "duty", duty)
    try:
        assert await leader.tick() == ["duty"]
        assert await follower.tick() == []
        assert await leader.tick() == [], "not due again within its interval"
    finally:
        await leader.elector.release()
        await follower.elector.release()
    assert ran == ["duty"]


async def test_worker_loop_runs_jobs_and_stops(committing_db: Database) -> None:
    worker = Worker(committing_db, poll_seconds=0.05)
    committing_db.on_jobs_committed(worker.wake)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(stop))
    async with committing_db.session_scope() as session:
        await enqueue(session, "test.record", {"n": 4})
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(loop, timeout=5)
    assert calls == [{"n": 4}]


async def test_a_commit_during_a_poll_is_not_lost(committing_db: Database) -> None:
    # The wake-up of a commit that lands while the worker is polling (its claim saw nothing
    # yet) must survive the poll; before, it was cleared after it and the job waited a whole
    # poll interval (here an hour).
    class CommitDuringPoll(Worker):
        async def run_once(self) -> int:
            ran = await super().run_once()
            if not calls and not getattr(self, "committed", False):
                self.committed = True
                async with self.db.session_scope() as session:
                    await enqueue(session, "test.record", {"n": 6})
            return ran

    worker = CommitDuringPoll(committing_db, poll_seconds=3600)
    committing_db.on_jobs_committed(worker.wake)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(stop))
    try:
        for _ in range(250):
            if calls:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)
    assert calls == [{"n": 6}]


async def test_serve_runs_the_worker_in_process_by_default(
    settings: Settings, committing_db: Database, keyring: Keyring
) -> None:
    assert Settings.model_fields["run_worker_in_process"].default is True
    app = create_app(
        settings.model_copy(update={"run_worker_in_process": True, "job_poll_seconds": 60.0}),
        database=committing_db,
        keyring=keyring,
    )
    async with LifespanManager(app):
        async with committing_db.session_scope() as session:
            await enqueue(session, "test.record", {"n": 5})
        # The poll is a minute away: the commit itself wakes the server's worker.
        for _ in range(250):
            if calls:
                break
            await asyncio.sleep(0.02)
    assert calls == [{"n": 5}]
    assert await _statuses(committing_db) == ["done"]
