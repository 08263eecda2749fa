"""SMTP down, then up: mail queued during the outage is delivered later, once each.

A real SMTP server (aiosmtpd) on a loopback port is stopped and started again on the same port.
What the outage exercises, end to end through the durable queue:

* the send fails fast (connection refused, then the SMTP breaker opens and refuses at once),
  the messages stay ``pending`` and their jobs are rescheduled with backoff;
* the backoff is honoured: nothing is retried before its time (the frozen clock moves instead
  of the test sleeping), and the delay grows with each failed attempt;
* once the server is back (and the breaker's reset time has run), the next due run delivers
  every message exactly once.

Single-attempt SMTP errors are covered in tests/email/test_email_delivery.py; this test is
about the outage as a whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.email import sender
from aayu_accounts.email.service import queue_email
from aayu_accounts.email.tasks import SEND_JOB
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import clock, resilience
from aayu_accounts.models.job import Job
from aayu_accounts.models.outbox_email import OutboxEmail
from tests.client.server import free_port
from tests.email.smtp_server import RecordingHandler

CONTEXT = {
    "full_name": "Meera Iyer",
    "link": "http://127.0.0.1:8000/verify-email?token=t",
    "hours": 24,
}
RECIPIENTS = [f"clinician{i}@clinic-example.org" for i in range(3)]


@contextmanager
def smtp_on(port: int, handler: RecordingHandler) -> Iterator[None]:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def fresh_transport() -> Iterator[None]:
    sender.reset()
    yield
    sender.reset()


@dataclass(frozen=True)
class JobRow:
    status: str
    attempts: int
    run_at: datetime
    last_error: str | None


async def _jobs(db: Database) -> list[JobRow]:
    async with db.session_scope(write=False) as session:
        rows = (await session.scalars(select(Job).where(Job.kind == SEND_JOB))).all()
        return [JobRow(j.status, j.attempts, j.run_at, j.last_error) for j in rows]


async def _statuses(db: Database) -> list[str]:
    async with db.session_scope(write=False) as session:
        return sorted((await session.scalars(select(OutboxEmail.status))).all())


async def test_mail_queued_while_smtp_is_down_is_delivered_once_it_is_back(
    db: Database, settings: Settings, frozen_clock: clock.FrozenClock
) -> None:
    smtp = resilience.dependency(resilience.SMTP)
    # Quick retries inside one attempt and a short breaker reset (the autouse fixture puts the
    # defaults back); the SMTP client itself is the real one.
    smtp.configure(
        replace(
            smtp.policy,
            timeout_seconds=2.0,
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.02,
            breaker_fail_max=3,
            breaker_reset_seconds=0.3,
        )
    )
    port = free_port()
    handler = RecordingHandler()
    sender.configure(settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"}))
    worker = Worker(db)

    # Down: nothing listens on the port.
    for to in RECIPIENTS:
        async with db.session_scope() as session:
            await queue_email(session, to=to, template="verify_email", context=CONTEXT)
    started = time.perf_counter()
    assert await worker.run_once() == len(RECIPIENTS)
    assert time.perf_counter() - started < 3.0  # refused, then the open breaker: no hang
    assert smtp.state == "open"
    assert await _statuses(db) == ["pending"] * len(RECIPIENTS)
    jobs = await _jobs(db)
    assert {(j.status, j.attempts) for j in jobs} == {("queued", 1)}
    assert {j.last_error for j in jobs} <= {"SMTPConnectError", "BreakerOpen", "OSError"}
    # Backoff after the first failure: 1-2 s. Nothing runs before then.
    first_delays = [(j.run_at - clock.now()).total_seconds() for j in jobs]
    assert all(1.0 <= d <= 2.0 for d in first_delays), first_delays
    assert await worker.run_once() == 0

    # Still down at the next due time: a second failure, and a longer wait (2-4 s).
    frozen_clock.advance(timedelta(seconds=2.01))
    await asyncio.sleep(
        max(0.0, smtp.opened_at + smtp.policy.breaker_reset_seconds - time.monotonic())
    )
    assert await worker.run_once() == len(RECIPIENTS)
    jobs = await _jobs(db)
    assert {(j.status, j.attempts) for j in jobs} == {("queued", 2)}
    second_delays = [(j.run_at - clock.now()).total_seconds() for j in jobs]
    assert all(2.0 <= d <= 4.0 for d in second_delays), second_delays
    assert handler.messages == []

    # Up again, on the same port.
    with smtp_on(port, handler):
        assert await worker.run_once() == 0  # not due yet: the backoff holds even now
        frozen_clock.advance(timedelta(seconds=4.01))
        # The breaker (monotonic time, not the test clock) lets a trial through after its
        # reset time; wait out whatever is left of it.
        await asyncio.sleep(
            max(0.0, smtp.opened_at + smtp.policy.breaker_reset_seconds - time.monotonic())
        )
        assert await worker.run_once() == len(RECIPIENTS)
    assert smtp.state == "closed"
    assert await _statuses(db) == ["sent"] * len(RECIPIENTS)
    assert {(j.status, j.attempts) for j in await _jobs(db)} == {("done", 3)}
    # Each message delivered exactly once, to its recipient.
    assert sorted(str(m["To"]) for m in handler.messages) == sorted(RECIPIENTS)
    # A later run finds nothing left to do (no duplicate delivery).
    frozen_clock.advance(timedelta(hours=1))
    assert await worker.run_once() == 0
    assert len(handler.messages) == len(RECIPIENTS)
