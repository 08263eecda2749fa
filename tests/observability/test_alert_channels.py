"""Alerts through the other configured channels (email to an SMTP server on loopback, the
log), and evaluated by the leader only: with two instances, one sends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.email import sender
from aayu_accounts.jobs import LeaderElector, Scheduler, Worker
from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import Severity, raise_alert, resolve_alert, service
from aayu_accounts.observability.alert.wiring import register_periodic
from tests.email.smtp_server import RecordingHandler, smtp_server
from tests.observability.receiver import Receiver, webhook_receiver


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server() as running:
        yield running
    sender.reset()


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


@pytest.mark.committing
async def test_email_channel_sends_firing_and_resolved(
    committing_db: Database, settings: Settings, smtp: tuple[RecordingHandler, int]
) -> None:
    handler, port = smtp
    configured = settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{port}",
            "alert_email_recipients": ["oncall@clinic-example.org"],
            "alert_log": False,
            "alert_group_wait_seconds": 0,
        }
    )
    service.configure(configured)
    sender.configure(configured)
    worker = Worker(committing_db)
    key = f"test.email.{uuid.uuid4().hex[:8]}"
    await raise_alert(committing_db, key, Severity.CRITICAL, "the thing broke", "alert-error-rate")
    await worker.run_once()
    assert len(handler.messages) == 1
    fired = handler.messages[0]
    assert fired["To"] == "oncall@clinic-example.org"
    assert str(fired["Subject"]).startswith("[CRITICAL] 1 alert(s) firing")
    body = fired.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert key.encode() in body
    assert b"docs/runbook.md#alert-error-rate" in body

    await resolve_alert(committing_db, key)
    await worker.run_once()
    assert len(handler.messages) == 2
    assert "resolved" in str(handler.messages[1]["Subject"])


@pytest.mark.committing
async def test_log_channel_is_used_when_nothing_else_is_configured(
    committing_db: Database, settings: Settings
) -> None:
    service.configure(
        settings.model_copy(
            update={
                "alert_webhook_urls": [],
                "alert_email_recipients": [],
                "alert_log": False,  # even so: never nowhere
                "alert_group_wait_seconds": 0,
            }
        )
    )
    key = f"test.log.{uuid.uuid4().hex[:8]}"
    with capture_logs() as logs:
        await raise_alert(committing_db, key, Severity.MEDIUM, "quietly wrong", "alert-error-rate")
        await Worker(committing_db).run_once()
    notes = [e for e in logs if e.get("event") == "alert.notification"]
    assert notes
    assert (key, "firing") in notes[0]["alerts"]
    assert "docs/runbook.md#alert-error-rate" in notes[0]["text"]


@pytest.mark.committing
async def test_only_the_leader_evaluates_the_rules(
    committing_db: Database, settings: Settings, receiver: Receiver
) -> None:
    configured = settings.model_copy(
        update={
            "alert_webhook_urls": [receiver.url],
            "alert_group_wait_seconds": 0,
            "alert_log": False,
            "alert_daily_summary_hour_utc": (clock.now().hour + 12) % 24,
        }
    )
    service.configure(configured)
    name = f"test-alerts-{uuid.uuid4().hex[:8]}"
    instances = [
        Scheduler(LeaderElector(committing_db, name=name, holder=holder, lease_seconds=30))
        for holder in ("one", "two")
    ]
    for scheduler in instances:
        register_periodic(scheduler, configured)
        assert scheduler.tasks["alerts.evaluate"][0] == configured.alert_evaluate_seconds
    try:
        ran = [await scheduler.tick() for scheduler in instances]
        assert ran == [["alerts.evaluate"], []]  # the second instance is not the leader
        metrics.AUDIT_CHAIN_BROKEN.set(1)
        for scheduler in instances:
            scheduler._last_run.clear()
            await scheduler.tick()
        await Worker(committing_db).run_once()
        fired = [
            e
            for m in receiver.messages()
            for e in m["alerts"]
            if e["key"] == "audit.chain_broken" and e["status"] == "firing"
        ]
        assert len(fired) == 1  # one leader, one notification
    finally:
        metrics.AUDIT_CHAIN_BROKEN.set(0)
        async with committing_db.session_scope() as session:
            await service.resolve_alert(session, "audit.chain_broken")
        for scheduler in instances:
            await scheduler.elector.release()


@pytest.mark.committing
async def test_email_without_smtp_is_logged_not_dropped(
    committing_db: Database, settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "smtp_url": None,
            "alert_email_recipients": ["oncall@clinic-example.org"],
            "alert_log": False,
            "alert_group_wait_seconds": 0,
        }
    )
    service.configure(configured)
    sender.configure(configured)
    key = f"test.nosmtp.{uuid.uuid4().hex[:8]}"
    try:
        with capture_logs() as logs:
            await raise_alert(committing_db, key, Severity.HIGH, "no mail", "alert-error-rate")
            await Worker(committing_db).run_once()
    finally:
        sender.reset()
    unsent = [e for e in logs if e.get("event") == "alert.email_not_sent"]
    assert unsent
    assert key in unsent[0]["text"]


@pytest.mark.committing
async def test_an_smtp_outage_is_retried_from_the_queue(
    committing_db: Database,
    settings: Settings,
    smtp: tuple[RecordingHandler, int],
    frozen_clock: clock.FrozenClock,
) -> None:
    handler, port = smtp
    handler.fail_first = 10  # 451 to every attempt of the first run
    configured = settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{port}",
            "alert_email_recipients": ["oncall@clinic-example.org"],
            "alert_log": False,
            "alert_group_wait_seconds": 0,
        }
    )
    service.configure(configured)
    sender.configure(configured)
    key = f"test.smtpretry.{uuid.uuid4().hex[:8]}"
    await raise_alert(committing_db, key, Severity.HIGH, "retry by mail", "alert-error-rate")
    await Worker(committing_db).run_once()
    assert handler.messages == []
    handler.fail_first = 0
    frozen_clock.advance(timedelta(minutes=10))
    await Worker(committing_db).run_once()
    assert len(handler.messages) == 1
    assert key.encode() in (handler.messages[0].get_payload(decode=True) or b"")
