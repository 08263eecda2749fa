"""Alerts: each severity reaches a signed webhook on loopback; dedupe, grouping, repeat,
resolution, rollback, and retry through the durable job queue."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import clock
from aayu_accounts.models.alert import Alert
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import Severity, raise_alert, resolve_alert, service
from aayu_accounts.observability.alert.evaluator import Evaluator
from aayu_accounts.observability.alert.rules import RULES
from aayu_accounts.observability.alert.severity import runbook_link
from aayu_accounts.observability.alert.signing import SIGNATURE_HEADER, verify
from tests.observability.receiver import Receiver, webhook_receiver

SECRET = "w" * 40
RUNBOOK = Path(__file__).parents[2] / "docs" / "runbook.md"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


@pytest.fixture
def alert_settings(settings: Settings, receiver: Receiver) -> Settings:
    configured = settings.model_copy(
        update={
            "alert_webhook_urls": [receiver.url],
            "alert_webhook_secret": SECRET,
            "alert_group_wait_seconds": 0,
            "alert_log": False,
            "alert_daily_summary_hour_utc": clock.now().hour,
        }
    )
    service.configure(configured)
    return configured


def _signed(receiver: Receiver) -> None:
    for delivery in receiver.deliveries:
        header = delivery.headers.get(SIGNATURE_HEADER, "")
        assert verify(SECRET, header, delivery.body, clock.unix_now()), "bad signature"
        assert not verify("x" * 40, header, delivery.body, clock.unix_now())


def _by_key(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        for entry in message["alerts"]:
            found.setdefault(entry["key"], []).append(entry)
    return found


@pytest.mark.committing
async def test_an_alert_of_each_severity_reaches_the_webhook_signed_and_resolves(
    committing_db: Database, alert_settings: Settings, receiver: Receiver
) -> None:
    # The disk rule's threshold is lowered so the real disk check fires; every other rule
    # runs as shipped, fed by the real metrics.
    rules = tuple(replace(r, threshold=0.0) if r.key == "host.disk_usage" else r for r in RULES)
    evaluator = Evaluator(alert_settings, rules=rules)
    worker = Worker(committing_db)
    try:
        await evaluator.run(committing_db)  # the baseline sample
        metrics.AUDIT_CHAIN_BROKEN.set(1)  # critical
        metrics.AUTH_LOGIN_FAILURES.labels("invalid_credentials").inc(11)  # high: > 10/min
        firing = await evaluator.run(committing_db)
        assert {"audit.chain_broken", "auth.failed_login_spike", "host.disk_usage"} <= set(firing)
        await worker.run_once()

        messages = receiver.messages()
        assert {m["severity"] for m in messages} >= {"critical", "high", "medium", "low"}
        _signed(receiver)
        keys = _by_key(messages)
        assert keys["audit.chain_broken"][0]["severity"] == "critical"
        assert keys["auth.failed_login_spike"][0]["severity"] == "high"
        assert keys["host.disk_usage"][0]["severity"] == "medium"
        summary = keys["daily_summary"][0]
        assert summary["severity"] == "low"
        assert "sign-ups" in summary["summary"]
        runbook = RUNBOOK.read_text()
        for entries in keys.values():
            anchor = entries[0]["runbook"].split("#", 1)[1]
            assert f'<a id="{anchor}"></a>' in runbook, anchor
        critical = next(m for m in messages if m["severity"] == "critical")
        assert critical["status"] == "firing"
        assert "audit.chain_broken" in critical["text"]  # Slack/Teams read "text"
        assert critical["alerts"][0]["event_action"] == "trigger"  # PagerDuty-style

        # Fixed: the next evaluation resolves it, and a resolved notification follows.
        metrics.AUDIT_CHAIN_BROKEN.set(0)
        before = len(receiver.deliveries)
        firing = await evaluator.run(committing_db)
        assert "audit.chain_broken" not in firing
        await worker.run_once()
        resolved = [
            e
            for m in receiver.messages()[before:]
            for e in m["alerts"]
            if e["key"] == "audit.chain_broken"
        ]
        assert resolved
        assert resolved[0]["status"] == "resolved"
        assert resolved[0]["event_action"] == "resolve"
        _signed(receiver)
    finally:
        metrics.AUDIT_CHAIN_BROKEN.set(0)


@pytest.mark.committing
async def test_dedupe_grouping_and_repeat_interval(
    committing_db: Database,
    alert_settings: Settings,
    receiver: Receiver,
    frozen_clock: clock.FrozenClock,
) -> None:
    worker = Worker(committing_db)
    for _ in range(3):  # the same key three times: one alert
        await raise_alert(committing_db, "test.one", Severity.CRITICAL, "one", "alert-error-rate")
    await raise_alert(committing_db, "test.two", Severity.CRITICAL, "two", "alert-error-rate")
    await worker.run_once()
    assert len(receiver.deliveries) == 1  # grouped: both in one message
    assert sorted(a["key"] for a in receiver.messages()[0]["alerts"]) == ["test.one", "test.two"]

    await raise_alert(committing_db, "test.one", Severity.CRITICAL, "one", "alert-error-rate")
    await worker.run_once()
    assert len(receiver.deliveries) == 1  # still firing, inside the repeat interval: quiet

    frozen_clock.advance(timedelta(seconds=alert_settings.alert_repeat_critical_seconds + 1))
    async with committing_db.session_scope() as session:
        await service.mark_repeats_due(session)
    await worker.run_once()
    assert len(receiver.deliveries) == 2
    repeat = receiver.messages()[1]["alerts"]
    assert {a["notification"] for a in repeat} == {2}

    await resolve_alert(committing_db, "test.one")
    await resolve_alert(committing_db, "test.one")  # twice: one resolution
    await worker.run_once()
    assert len(receiver.deliveries) == 3
    assert [a["status"] for a in receiver.messages()[2]["alerts"]] == ["resolved"]


@pytest.mark.committing
async def test_an_alert_raised_in_a_rolled_back_transaction_is_never_sent(
    committing_db: Database, alert_settings: Settings, receiver: Receiver
) -> None:
    with pytest.raises(RuntimeError):
        async with committing_db.session_scope() as session:
            await raise_alert(session, "test.rollback", Severity.HIGH, "x", "alert-error-rate")
            raise RuntimeError("the caller's change failed")
    await Worker(committing_db).run_once()
    assert receiver.deliveries == []
    async with committing_db.session_scope(write=False) as session:
        assert await session.scalar(select(Alert).where(Alert.key == "test.rollback")) is None


@pytest.mark.committing
async def test_a_receiver_outage_is_retried_from_the_durable_queue(
    committing_db: Database,
    alert_settings: Settings,
    receiver: Receiver,
    frozen_clock: clock.FrozenClock,
) -> None:
    worker = Worker(committing_db)
    receiver.status = 503
    await raise_alert(committing_db, "test.retry", Severity.HIGH, "retry me", "alert-error-rate")
    await worker.run_once()
    assert receiver.deliveries == []

    # A new worker (as after a restart) finds the job and delivers once the receiver is back.
    receiver.status = 200
    frozen_clock.advance(timedelta(minutes=10))
    await Worker(committing_db).run_once()
    assert [a["key"] for a in receiver.messages()[0]["alerts"]] == ["test.retry"]


def test_every_runbook_anchor_named_in_the_code_has_its_section() -> None:
    # Each alert names its runbook section: every "alert-..." anchor any module passes to
    # raise_alert (or a rule table) has a section in docs/runbook.md.
    source = Path(__file__).parents[2] / "src" / "aayu_accounts"
    anchors = {
        anchor
        for path in source.rglob("*.py")
        for anchor in re.findall(r"[\"'](alert-[a-z0-9-]+)[\"']", path.read_text())
    }
    assert {"alert-database-down", "alert-brute-force", "alert-auto-rollback"} <= anchors
    runbook = RUNBOOK.read_text()
    missing = sorted(a for a in anchors if f'<a id="{a}"></a>' not in runbook)
    assert not missing, missing


@pytest.mark.committing
async def test_a_runbook_given_as_a_link_is_named_once(
    committing_db: Database, alert_settings: Settings, receiver: Receiver
) -> None:
    # identity (brute force) and rollout (auto-rollback) pass runbook_link(...), the rules
    # pass the bare anchor: the message carries "docs/runbook.md#<anchor>" either way.
    await raise_alert(
        committing_db, "test.linked", Severity.HIGH, "x", runbook_link("alert-brute-force")
    )
    await raise_alert(committing_db, "test.bare", Severity.HIGH, "y", "alert-brute-force")
    await Worker(committing_db).run_once()
    entries = [e for m in receiver.messages() for e in m["alerts"]]
    assert {e["runbook"] for e in entries} == {"docs/runbook.md#alert-brute-force"}
    assert "runbook: docs/runbook.md#alert-brute-force)" in receiver.messages()[0]["text"]
