"""Durable background jobs and leader election, on SQLite and PostgreSQL alike.

Why not a library: procrastinate and the others we looked at are PostgreSQL-only (or need
Redis), and the embedded default runs on SQLite. The queue is one table:

* :func:`enqueue` inserts a row in the caller's transaction, so a rollback drops the job and a
  commit makes it durable (DESIGN rule 3: side effects wait for commit);
* a :class:`Worker` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
  ``BEGIN IMMEDIATE`` serializes claimers), runs the handler in its own transaction, and on
  failure reschedules with exponential backoff and jitter until ``max_attempts``, then marks the
  job ``dead``. A worker that dies mid-job leaves a lease that expires, so the job runs again:
  delivery is at least once, and handlers are written to be idempotent.
* :class:`LeaderElector` lets exactly one process run singleton duties (schedulers, monitors):
  a session-level advisory lock on PostgreSQL, an expiring lease row on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aayu_accounts.db import JOBS_ENQUEUED, Database
from aayu_accounts.kit import clock
from aayu_accounts.models.job import Job
from aayu_accounts.models.leader_lease import LeaderLease

log = structlog.get_logger(__name__)

JobHandler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
PeriodicTask = Callable[[Database], Awaitable[None]]

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"


@dataclass(frozen=True)
class JobSpec:
    kind: str
    handler: JobHandler
    max_attempts: int | None = None


_handlers: dict[str, JobSpec] = {}


def job_handler(
    kind: str, *, max_attempts: int | None = None
) -> Callable[[JobHandler], JobHandler]:
    """Register the handler of a job kind. The handler gets the job's session and payload."""

    def register(handler: JobHandler) -> JobHandler:
        _handlers[kind] = JobSpec(kind=kind, handler=handler, max_attempts=max_attempts)
        return handler

    return register


def registered_kinds() -> list[str]:
    return sorted(_handlers)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
) -> str | None:
    """Add a job in the caller's transaction; it exists only if that transaction commits.

    Returns the job id, or ``None`` when ``dedupe_key`` names a job that already exists.
    """
    if kind not in _handlers:
        raise LookupError(f"no handler registered for job kind {kind!r}")
    spec = _handlers[kind]
    job = Job(
        kind=kind,
        payload=payload or {},
        run_at=run_at or clock.now(),
        dedupe_key=dedupe_key,
        max_attempts=max_attempts or spec.max_attempts or 8,
    )
    if dedupe_key is not None:
        existing = await session.scalar(select(Job.id).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return None
        try:
            async with session.begin_nested():
                session.add(job)
        except IntegrityError:
            return None
    else:
        session.add(job)
        await session.flush()
    session.info[JOBS_ENQUEUED] = True
    return job.id


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret  # nosec B311


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Worker:
    db: Database
    poll_seconds: float = 1.0
    lease_seconds: int = 300
    batch_size: int = 10
    worker_id: str = field(default_factory=worker_identity)
    # Told (kind, outcome) after each run: "done", "retry" or "dead" (metrics hook).
    on_finished: Callable[[str, str], None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """Run due jobs now rather than at the next poll (called after commits that enqueue)."""
        self._wake.set()

    async def _claim(self) -> list[Job]:
        now = clock.now()
        async with self.db.session_scope() as session:
            due = (
                select(Job.id)
                .where(
                    or_(
                        (Job.status == QUEUED) & (Job.run_at <= now),
                        (Job.status == RUNNING) & (Job.locked_until < now),
                    )
                )
                .order_by(Job.run_at)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            ids = list((await session.scalars(due)).all())
            if not ids:
                return []
            await session.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(
                    status=RUNNING,
                    attempts=Job.attempts + 1,
                    locked_by=self.worker_id,
                    locked_until=now + timedelta(seconds=self.lease_seconds),
                )
            )
            rows = (await session.scalars(select(Job).where(Job.id.in_(ids)))).all()
            return list(rows)

    async def _run(self, job: Job) -> None:
        spec = _handlers.get(job.kind)
        try:
            if spec is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            async with self.db.session_scope() as session:
                structlog.contextvars.bind_contextvars(job_id=job.id, job_kind=job.kind)
                await spec.handler(session, dict(job.payload))
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(status=DONE, finished_at=clock.now(), locked_until=None)
                )
            self._finished(job.kind, DONE)
        except Exception as exc:  # any failure of a job is retried, then dead
            await self._record_failure(job, exc)
        finally:
            structlog.contextvars.unbind_contextvars("job_id", "job_kind")

    async def _record_failure(self, job: Job, exc: Exception) -> None:
        dead = job.attempts >= job.max_attempts
        # Only the exception type is kept: messages can carry personal data or secrets.
        reason = type(exc).__name__
        log.warning(
            "job.failed",
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempts,
            dead=dead,
            error=reason,
        )
        values: dict[str, Any] = {"last_error": reason, "locked_until": None}
        if dead:
            values.update(status=DEAD, finished_at=clock.now())
        else:
            values.update(
                status=QUEUED,
                run_at=clock.now() + timedelta(seconds=backoff_seconds(job.attempts)),
            )
        async with self.db.session_scope() as session:
            await session.execute(update(Job).where(Job.id == job.id).values(**values))
        self._finished(job.kind, DEAD if dead else "retry")

    def _finished(self, kind: str, outcome: str) -> None:
        if self.on_finished is not None:
            self.on_finished(kind, outcome)

    async def run_once(self) -> int:
        """Claim and run the jobs that are due; returns how many ran."""
        ran = 0
        while jobs := await self._claim():
            for job in jobs:
                await self._run(job)
                ran += 1
        return ran

    async def run_forever(self, stop: asyncio.Event) -> None:
        log.info("worker.started", worker_id=self.worker_id)
        while not stop.is_set():
            # Cleared before the poll, not after: a commit that lands while the poll runs
            # (its claim saw nothing yet) leaves the event set, so the next poll starts at once
            # instead of a whole interval later.
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                # A database outage must not kill the loop; the next poll tries again.
                log.exception("worker.poll_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await _first_of(self._wake, stop)
        log.info("worker.stopped", worker_id=self.worker_id)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def queue_stats(session: AsyncSession) -> dict[str, Any]:
    """Depth per status and the age in seconds of the oldest queued job."""
    rows = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
    oldest = await session.scalar(select(func.min(Job.run_at)).where(Job.status == QUEUED))
    age = max(0.0, (clock.now() - oldest).total_seconds()) if oldest else 0.0
    return {
        "depth": {str(status): int(count) for status, count in rows},
        "oldest_queued_age_s": age,
    }


@dataclass
class LeaderElector:
    """Exactly one process at a time holds the named leadership."""

    db: Database
    name: str = "aayu-leader"
    lease_seconds: int = 30
    holder: str = field(default_factory=worker_identity)
    _connection: AsyncConnection | None = None
    is_leader: bool = False

    @property
    def _lock_key(self) -> int:
        # A stable signed 32-bit key derived from the name (advisory locks take bigint).
        return zlib.crc32(self.name.encode()) - 2**31

    async def try_acquire(self) -> bool:
        """Take or renew leadership; returns whether this process leads now."""
        try:
            if self.db.dialect == "postgresql":
                self.is_leader = await self._advisory()
            else:
                self.is_leader = await self._lease()
        except Exception:
            log.exception("leader.check_failed")
            await self.release()
        return self.is_leader

    async def _advisory(self) -> bool:
        if self._connection is not None:
            # Still holding the lock as long as its connection lives.
            await self._connection.execute(text("SELECT 1"))
            return True
        connection = await self.db.engine.connect()
        acquired = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lock_key}
        )
        await connection.commit()
        if acquired:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def _lease(self) -> bool:
        now = clock.now()
        expires = now + timedelta(seconds=self.lease_seconds)
        async with self.db.session_scope() as session:
            result = await session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == self.name)
                .where(or_(LeaderLease.holder == self.holder, LeaderLease.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
            )
            if getattr(result, "rowcount", 0) == 1:
                return True
            exists = await session.scalar(
                select(LeaderLease.name).where(LeaderLease.name == self.name)
            )
            if exists is None:
                session.add(LeaderLease(name=self.name, holder=self.holder, expires_at=expires))
                return True
            return False

    async def release(self) -> None:
        self.is_leader = False
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._lock_key}
                )
                await connection.close()
        elif self.db.dialect == "sqlite":
            with contextlib.suppress(Exception):
                async with self.db.session_scope() as session:
                    await session.execute(
                        update(LeaderLease)
                        .where(LeaderLease.name == self.name)
                        .where(LeaderLease.holder == self.holder)
                        .values(expires_at=clock.now())
                    )


@dataclass
class Scheduler:
    """Periodic singleton duties, run only while this process is the leader."""

    elector: LeaderElector
    tasks: dict[str, tuple[float, PeriodicTask]] = field(default_factory=dict)
    _last_run: dict[str, float] = field(default_factory=dict)

    def every(self, seconds: float, name: str, task: PeriodicTask) -> None:
        self.tasks[name] = (seconds, task)

    async def tick(self) -> list[str]:
        if not await self.elector.try_acquire():
            return []
        ran: list[str] = []
        for name, (interval, task) in self.tasks.items():
            last = self._last_run.get(name)
            if last is not None and clock.monotonic() - last < interval:
                continue
            self._last_run[name] = clock.monotonic()
            try:
                await task(self.elector.db)
                ran.append(name)
            except Exception:
                log.exception("scheduler.task_failed", task=name)
        return ran

    async def run_forever(self, stop: asyncio.Event, period: float = 1.0) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await stop.wait()
        await self.elector.release()
