"""The server process killed with SIGKILL mid-request, then started again (PostgreSQL + Redis).

A real uvicorn process (tests/client/server.py) runs its job worker in-process. When it is
killed:

* sign-ups are in flight *inside their transactions*: the test holds the audit chain's advisory
  lock, so each one has written its user, clinic and membership and waits to append its audit
  event — the kill lands between the writes of one transaction, deterministically;
* an ``email.send`` job is running: the SMTP server it talks to accepts the connection and
  never answers, so the job holds its lease when the process dies.

After the restart: nothing of the interrupted sign-ups is there (no user without its clinic,
membership, audit event, email and job), what was acknowledged is there with its audit event,
the audit chain verifies and goes on growing, and the dead worker's lease expires and the job
runs again (the test clock is moved past the lease instead of waiting five minutes) and
delivers the email once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.repository import CHAIN_LOCK_KEY
from aayu_accounts.audit.verify import verify_chain
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.email import sender
from aayu_accounts.email.tasks import SEND_JOB
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import clock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.job import Job
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.user import User
from tests.client.server import server_stack
from tests.email.smtp_server import smtp_server
from tests.identity.accounts.helpers import register, unique_email

IN_FLIGHT = 4
WAIT_SECONDS = 30.0


@contextmanager
def silent_smtp() -> Iterator[int]:
    """A port whose connections are completed by the kernel and then never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


async def _wait_for(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _count(db: Database, model: type[object]) -> int:
    async with db.session_scope(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.committing
@pytest.mark.timeout(150)
async def test_sigkill_mid_request_leaves_no_partial_state_and_the_lease_recovers(
    backend: str, tmp_path: Path, frozen_clock: clock.FrozenClock
) -> None:
    if backend != "postgresql":
        pytest.skip("a server process of its own on PostgreSQL + Redis, as deployed")
    frozen_clock.set(clock.SystemClock().now())
    async with server_stack(backend, tmp_path) as stack:
        db = Database.from_settings(stack.settings)
        # One connection that holds the chain lock, outside any pool the app could share.
        locker = create_async_engine(stack.settings.database_url, poolclass=NullPool)
        with silent_smtp() as dead_port:
            stack.env.update(
                {
                    "AAYU_RUN_WORKER_IN_PROCESS": "true",
                    "AAYU_JOB_POLL_SECONDS": "0.2",
                    "AAYU_SMTP_URL": f"smtp://127.0.0.1:{dead_port}",
                    "AAYU_SMTP_TIMEOUT_SECONDS": "120",
                }
            )
            server = stack.server()
            await asyncio.to_thread(server.start)
            assert server.process is not None
            victim_pid = server.process.pid
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                    # Acknowledged before the kill: must survive it, with its audit event.
                    kept = await register(http)

                    async def job_running() -> bool:
                        async with db.session_scope(write=False) as session:
                            job = await session.scalar(select(Job).where(Job.kind == SEND_JOB))
                            return job is not None and job.status == "running"

                    await _wait_for(job_running, "the email job to be running")

                    async with locker.connect() as lock_conn:
                        await lock_conn.execute(
                            text("SELECT pg_advisory_lock(:k)"), {"k": CHAIN_LOCK_KEY}
                        )
                        await lock_conn.commit()
                        emails = [unique_email("inflight") for _ in range(IN_FLIGHT)]
                        inflight = [asyncio.create_task(register(http, email=e)) for e in emails]

                        seen: list[object] = []

                        async def all_waiting_on_the_chain() -> bool:
                            rows = (
                                await lock_conn.execute(
                                    text(
                                        "SELECT wait_event_type, wait_event, state,"
                                        " left(query, 80) FROM pg_stat_activity"
                                        " WHERE datname = current_database()"
                                    )
                                )
                            ).all()
                            await lock_conn.commit()
                            seen[:] = [tuple(r) for r in rows]
                            waiting = [r for r in rows if tuple(r[:2]) == ("Lock", "advisory")]
                            return len(waiting) == IN_FLIGHT

                        try:
                            await _wait_for(all_waiting_on_the_chain, "sign-ups mid-write")
                        except AssertionError as exc:
                            raise AssertionError(f"{exc}: {seen}") from None
                        os.kill(victim_pid, signal.SIGKILL)
                        await asyncio.to_thread(server.process.wait, 10)
                        results = await asyncio.gather(*inflight, return_exceptions=True)
                        assert all(isinstance(r, BaseException) for r in results), results
                        await lock_conn.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": CHAIN_LOCK_KEY}
                        )
                        await lock_conn.commit()

                        # The killed process's backends see their client gone and roll back.
                        async def backends_gone() -> bool:
                            left = await lock_conn.scalar(
                                text(
                                    "SELECT count(*) FROM pg_stat_activity"
                                    " WHERE datname = current_database()"
                                    " AND state LIKE 'idle in transaction%'"
                                )
                            )
                            await lock_conn.commit()
                            return int(left or 0) == 0

                        await _wait_for(backends_gone, "the dead process's transactions to end")
            finally:
                if server.process is not None and server.process.poll() is not None:
                    server.process = None  # killed above; nothing left for stop() to do

        # Restart (worker off: the lease below is recovered by a worker the test drives).
        stack.env["AAYU_RUN_WORKER_IN_PROCESS"] = "false"
        restarted = stack.server()
        await asyncio.to_thread(restarted.start)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as http:
            after = await register(http)

        try:
            # All or nothing: two sign-ups acknowledged, each complete; none of the others.
            for model in (User, Organization, Membership, OutboxEmail):
                assert await _count(db, model) == 2, model.__name__
            async with db.session_scope(write=False) as session:
                user_ids = set((await session.scalars(select(User.id))).all())
                registered = (
                    await session.scalars(
                        select(AuditEvent.target_id).where(
                            AuditEvent.action == AuditAction.USER_REGISTERED.value
                        )
                    )
                ).all()
                assert sorted(str(r) for r in registered) == sorted(user_ids)
                report = await verify_chain(session)
                assert report.ok, report.problem
                jobs = (await session.scalars(select(Job).where(Job.kind == SEND_JOB))).all()
                assert len(jobs) == 2
                stuck = next(j for j in jobs if j.status == "running")
                assert stuck.locked_by is not None
                assert stuck.locked_by.endswith(f":{victim_pid}")
                assert stuck.locked_until is not None
                stuck_id, lease_end = stuck.id, stuck.locked_until

            # The dead worker's lease: nothing takes the job before it ends ...
            runtime = await start_keyring(stack.settings, db, refresh=False)
            try:
                with smtp_server() as (handler, port):
                    sender.configure(
                        stack.settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
                    )
                    worker = Worker(db)
                    frozen_clock.set(clock.SystemClock().now())
                    assert await worker.run_once() == 1  # the restarted server's sign-up
                    async with db.session_scope(write=False) as session:
                        job = await session.get(Job, stuck_id)
                        assert job is not None
                        assert job.status == "running"
                    # ... and once it has, the job runs again and delivers, once.
                    frozen_clock.set(lease_end + timedelta(seconds=1))
                    assert await worker.run_once() == 1
                async with db.session_scope(write=False) as session:
                    job = await session.get(Job, stuck_id)
                    assert job is not None
                    assert (job.status, job.attempts) == ("done", 2)
                    statuses = (await session.scalars(select(OutboxEmail.status))).all()
                    assert sorted(statuses) == ["sent", "sent"]
                assert sorted(str(m["To"]) for m in handler.messages) == sorted(
                    [kept.email, after.email]
                )
            finally:
                await runtime.stop()
                sender.reset()
        finally:
            await db.dispose()
            await locker.dispose()
