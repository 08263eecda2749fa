"""``aayu-accounts worker`` runs what the server runs besides HTTP: jobs, leader duties and the
per-process health monitor (an operator watching a worker-only host still sees the database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts import migrate
from aayu_accounts.cli.serve_cli import run_worker
from aayu_accounts.db import Database, create_engine
from aayu_accounts.jobs import enqueue, job_handler
from aayu_accounts.models import Job
from aayu_accounts.observability import metrics
from tests.fixtures.database import make_settings


async def test_the_worker_runs_the_health_monitor(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}", tmp_path)
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    await engine.dispose()
    db = Database.from_settings(settings)
    metrics.DB_UP.set(0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, db, stop))
    try:
        async with asyncio.timeout(20):
            while metrics.DB_UP._value.get() != 1:  # the gauge the monitor sets after a ping
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await db.dispose()


ran: list[dict[str, Any]] = []


@job_handler("test.worker_command")
async def _record(session: AsyncSession, payload: dict[str, Any]) -> None:
    ran.append(payload)


async def test_the_worker_alone_runs_committed_jobs(tmp_path: Path) -> None:
    # What `aayu-accounts worker` runs on a host that serves no HTTP (the server itself set
    # AAYU_RUN_WORKER_IN_PROCESS=false): jobs another process committed still run.
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", tmp_path, job_poll_seconds=0.05
    )
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    await engine.dispose()
    producer = Database.from_settings(settings)
    async with producer.session_scope() as session:
        await enqueue(session, "test.worker_command", {"n": 1})
    await producer.dispose()
    ran.clear()
    db = Database.from_settings(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, db, stop))
    try:
        async with asyncio.timeout(20):
            while not ran:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    async with db.session_scope(write=False) as session:
        # Only this test's job: under load the leader's alert evaluation may also queue a
        # grouped flush (run_at in the future), which is the worker doing its job too.
        statuses = (
            await session.scalars(select(Job.status).where(Job.kind == "test.worker_command"))
        ).all()
    await db.dispose()
    assert ran == [{"n": 1}]
    assert statuses == ["done"]
