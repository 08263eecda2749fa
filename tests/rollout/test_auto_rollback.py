"""The auto-rollback monitor: windows, minimum sample, both-windows rule, dry run, no re-enable."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.alert import Alert
from aayu_accounts.models.incident import Incident
from aayu_accounts.rollout.auto_rollback.monitor import (
    AutoRollbackMonitor,
    Thresholds,
    Verdict,
    judge,
)
from aayu_accounts.rollout.flag import loader
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.outcomes import (
    Capability,
    Outcome,
    OutcomeWindow,
    WindowStats,
    stats_from,
)
from aayu_accounts.rollout.outcomes import Counts as OutcomeCounts
from aayu_accounts.rollout.settings import RolloutSettings

OPERATOR = Actor.system("test")


def stats(ok: int, errors: int = 0, slow: int = 0, timeouts: int = 0) -> WindowStats:
    counts = OutcomeCounts()
    for _ in range(ok):
        counts.add(Outcome.OK, 0.05)
    for _ in range(errors):
        counts.add(Outcome.ERROR, 0.05)
    for _ in range(timeouts):
        counts.add(Outcome.TIMEOUT, 0.05)
    for _ in range(slow):
        counts.add(Outcome.OK, 4.0)
    return stats_from([counts], 60)


def test_judge_thresholds_and_minimum_sample() -> None:
    t = Thresholds(min_requests=50)
    assert judge(stats(10, errors=10), t)[0] is Verdict.INCONCLUSIVE
    assert judge(stats(0), t)[0] is Verdict.INCONCLUSIVE
    assert judge(stats(96, errors=4), t)[0] is Verdict.OK
    verdict, reasons = judge(stats(90, errors=10), t)
    assert verdict is Verdict.BREACH
    assert any("error rate" in r for r in reasons)
    verdict, reasons = judge(stats(90, slow=10), t)
    assert verdict is Verdict.BREACH
    assert reasons == ["p95 latency > 3.0 s"]
    assert judge(stats(95, slow=5), t)[0] is Verdict.OK
    # Timeouts are not errors, but they are not successes either: success < 95 % breaches.
    verdict, reasons = judge(stats(94, timeouts=6), t)
    assert verdict is Verdict.BREACH
    assert reasons == ["success rate 94.0% < 95%"]
    assert judge(stats(95, timeouts=5), t)[0] is Verdict.OK
    # The thresholds are configurable.
    strict = Thresholds(min_requests=50, max_error_rate=0.01, min_success_rate=0.99)
    assert judge(stats(97, errors=3), strict)[0] is Verdict.BREACH


def settings_for(tmp_path: Path, **extra: object) -> RolloutSettings:
    return RolloutSettings.model_validate(
        {"auto_rollback_min_requests": 20, "incident_dir": tmp_path / "incidents", **extra}
    )


async def enable_new_auth(db: Database) -> None:
    async with db.session_scope() as session:
        await flag_service.ensure_builtin_flags(session, actor=OPERATOR)
        await flag_service.update_flag(
            session, "NEW_AUTH", FlagUpdate(enabled=True, rollout_percent=25), actor=OPERATOR
        )


def failing_traffic(window: OutcomeWindow, at: float, count: int = 40) -> None:
    for i in range(count):
        outcome = Outcome.ERROR if i % 2 else Outcome.OK
        window.record(Capability.AUTH, outcome, 0.02, at=at)


async def test_breach_in_both_windows_rolls_back_alerts_and_reports(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    await enable_new_auth(db)
    window = OutcomeWindow()
    failing_traffic(window, frozen_clock.now().timestamp() - 5)
    monitor = AutoRollbackMonitor(db, window, settings_for(tmp_path))
    result = await monitor.check()
    assert result.action == "rolled_back"
    async with db.session_scope(write=False) as session:
        snapshot = await loader.load_snapshot(session)
        incident = await session.get(Incident, result.incident_id)
        assert incident is not None
        kind, actor, report_path = incident.kind, incident.actor, incident.report_path
        measured = incident.metrics["capabilities"]["auth"]
        before = incident.flags_before["NEW_AUTH"]
        alert = await session.scalar(select(Alert).where(Alert.key == "rollout.auto_rollback"))
        assert alert is not None
        alert_state = (alert.severity, alert.status)
    assert not snapshot.flags["NEW_AUTH"].enabled
    assert snapshot.flags["FALLBACK"].enabled
    assert (kind, actor) == ("automatic", "system:auto-rollback")
    assert measured["short"]["verdict"] == "breach"
    assert measured["long"]["verdict"] == "breach"
    assert before == {"enabled": True, "rollout_percent": 25}
    assert alert_state == ("critical", "firing")
    assert report_path is not None
    assert "automatic rollback" in Path(report_path).read_text()  # noqa: ASYNC240

    # The samples that caused it are ignored from now on...
    assert (await monitor.check()).action == "none"
    # ...by a new leader's monitor too (the incidents table says when the rollback was), and
    # nothing turns the flags back on.
    fresh = AutoRollbackMonitor(db, window, settings_for(tmp_path))
    assert (await fresh.check()).action == "none"
    async with db.session_scope(write=False) as session:
        assert not (await loader.load_snapshot(session)).flags["NEW_AUTH"].enabled
    # An operator re-enables the path: the old failures cannot roll it back again.
    await enable_new_auth(db)
    frozen_clock.advance(1)
    assert (await monitor.check()).action == "none"


async def test_a_breach_in_one_window_only_is_not_enough(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    await enable_new_auth(db)
    window = OutcomeWindow()
    now = frozen_clock.now().timestamp()
    failing_traffic(window, now - 200)  # long window only
    for _ in range(40):
        window.record(Capability.AUTH, Outcome.OK, 0.02, at=now - 5)
    result = await AutoRollbackMonitor(db, window, settings_for(tmp_path)).check()
    auth = next(r for r in result.reports if r.capability is Capability.AUTH)
    assert (auth.short_verdict, auth.long_verdict) == (Verdict.OK, Verdict.BREACH)
    assert result.action == "none"


async def test_too_little_traffic_is_inconclusive(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    await enable_new_auth(db)
    window = OutcomeWindow()
    failing_traffic(window, frozen_clock.now().timestamp() - 5, count=10)
    result = await AutoRollbackMonitor(db, window, settings_for(tmp_path)).check()
    assert result.action == "none"
    assert result.reports[0].short_verdict is Verdict.INCONCLUSIVE


async def test_dry_run_only_reports(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    await enable_new_auth(db)
    window = OutcomeWindow()
    failing_traffic(window, frozen_clock.now().timestamp() - 5)
    monitor = AutoRollbackMonitor(db, window, settings_for(tmp_path, auto_rollback_dry_run=True))
    assert (await monitor.check()).action == "would_roll_back"
    async with db.session_scope(write=False) as session:
        snapshot = await loader.load_snapshot(session)
        incidents = (await session.scalars(select(Incident))).all()
    assert snapshot.flags["NEW_AUTH"].enabled
    assert incidents == []


async def test_a_breach_turns_every_new_path_flag_off_in_one_version(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    """Documents failing (NEW_DATABASE's capability) roll back NEW_AUTH, NEW_DATABASE and
    BILLING together, FALLBACK on, as one configuration version."""
    await enable_new_auth(db)
    async with db.session_scope() as session:
        for key in ("NEW_DATABASE", "BILLING"):
            await flag_service.update_flag(
                session, key, FlagUpdate(enabled=True, rollout_percent=50), actor=OPERATOR
            )
        version_before = (await loader.load_snapshot(session)).version
    window = OutcomeWindow()
    for i in range(40):
        outcome = Outcome.ERROR if i % 2 else Outcome.OK
        window.record(Capability.DOCUMENTS, outcome, 0.02, at=frozen_clock.now().timestamp() - 5)
    result = await AutoRollbackMonitor(db, window, settings_for(tmp_path)).check()
    assert result.action == "rolled_back"
    by_capability = {r.capability: r for r in result.reports}
    assert by_capability[Capability.DOCUMENTS].breached
    assert by_capability[Capability.AUTH].short_verdict is Verdict.INCONCLUSIVE
    async with db.session_scope(write=False) as session:
        snapshot = await loader.load_snapshot(session)
    assert snapshot.version == version_before + 1
    assert [snapshot.flags[k].enabled for k in ("NEW_AUTH", "NEW_DATABASE", "BILLING")] == [
        False,
        False,
        False,
    ]
    assert (snapshot.flags["FALLBACK"].enabled, snapshot.flags["FALLBACK"].rollout_percent) == (
        True,
        100,
    )


async def test_failures_from_before_any_rollback_never_roll_back_a_re_enabled_path(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    """An operator rolled back by hand (or another leader did), fixed the cause and turned
    the path on again: the failures that led to that rollback are history. A monitor that
    saw them, or a new leader's monitor, must not roll the fixed path back for them."""
    await enable_new_auth(db)
    window = OutcomeWindow()
    failing_traffic(window, frozen_clock.now().timestamp() - 5)
    monitor = AutoRollbackMonitor(db, window, settings_for(tmp_path))
    async with db.session_scope() as session:
        await incident_service.rollback(session, actor=OPERATOR, kind="manual", reason="by hand")
    frozen_clock.advance(10)
    await enable_new_auth(db)
    assert (await monitor.check()).action == "none"
    new_leader = AutoRollbackMonitor(db, window, settings_for(tmp_path))
    assert (await new_leader.check()).action == "none"
    async with db.session_scope(write=False) as session:
        assert (await loader.load_snapshot(session)).flags["NEW_AUTH"].enabled
    # Fresh failures after the re-enable still roll it back.
    failing_traffic(window, frozen_clock.now().timestamp())
    assert (await monitor.check()).action == "rolled_back"


async def test_a_breach_with_every_new_path_flag_off_has_nothing_to_roll_back(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    """People only in the new store use the new path whatever the flags: their failures are
    judged, but with the flags already off there is nothing to switch, and no incident."""
    async with db.session_scope() as session:
        await flag_service.ensure_builtin_flags(session, actor=OPERATOR)
        await flag_service.apply_rollback(session, actor=OPERATOR)
    window = OutcomeWindow()
    failing_traffic(window, frozen_clock.now().timestamp() - 5)
    result = await AutoRollbackMonitor(db, window, settings_for(tmp_path)).check()
    assert result.action == "nothing_to_roll_back"
    async with db.session_scope(write=False) as session:
        assert (await session.scalars(select(Incident))).all() == []
