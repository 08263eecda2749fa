"""Leader-only monitor of the new path (the strategy's AutoRollback, done carefully).

Every ``auto_rollback_interval_seconds`` (5 s) and per capability, the new path's outcomes
are judged over a short (1 min) and a long (5 min) window against the strategy's thresholds:
error rate > 5 %, p95 latency > 3 s, success rate < 95 % (configurable). A window with fewer
than ``auto_rollback_min_requests`` requests is *inconclusive* (NOTES.md: at low traffic,
binomial noise alone crosses 5 %): never a rollback, never a promotion.

A breach in BOTH windows of a capability, while any new-path flag is on, rolls back: NEW_AUTH,
NEW_DATABASE and BILLING off, FALLBACK on (one config version, fanned out to every instance
at commit), a critical alert, and an incident report (metrics at the time, flags before and
after, timeline), stored and written as a file. The monitor never turns a flag on. Samples
from before the last rollback -- its own, an operator's, or another leader's (the incidents
table says when) -- are ignored, so the failures that led to a rollback cannot roll back the
path again once it is fixed and re-enabled. In dry-run mode it only reports what it would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert.service import raise_alert
from aayu_accounts.observability.alert.severity import Severity, runbook_link
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.service import ROLLBACK_OFF
from aayu_accounts.rollout.incident import repository as incident_repository
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.outcomes import Capability, OutcomeSource, WindowStats
from aayu_accounts.rollout.settings import RolloutSettings

log = structlog.get_logger(__name__)

MONITOR_ACTOR = Actor.system("auto-rollback")
ALERT_KEY = "rollout.auto_rollback"


class Verdict(StrEnum):
    OK = "ok"
    BREACH = "breach"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 50
    max_error_rate: float = 0.05
    max_p95_seconds: float = 3.0
    min_success_rate: float = 0.95

    @classmethod
    def from_settings(cls, rollout: RolloutSettings) -> Thresholds:
        return cls(
            min_requests=rollout.auto_rollback_min_requests,
            max_error_rate=rollout.auto_rollback_max_error_rate,
            max_p95_seconds=rollout.auto_rollback_max_p95_seconds,
            min_success_rate=rollout.auto_rollback_min_success_rate,
        )


def judge(stats: WindowStats, thresholds: Thresholds) -> tuple[Verdict, list[str]]:
    if stats.total < thresholds.min_requests:
        return Verdict.INCONCLUSIVE, [f"{stats.total} < {thresholds.min_requests} requests"]
    reasons = []
    if stats.error_rate > thresholds.max_error_rate:
        reasons.append(f"error rate {stats.error_rate:.1%} > {thresholds.max_error_rate:.0%}")
    # p95 above the limit <=> more than 5 % of requests slower than it.
    if stats.share_slower_than(thresholds.max_p95_seconds) > 0.05:
        reasons.append(f"p95 latency > {thresholds.max_p95_seconds} s")
    if stats.success_rate < thresholds.min_success_rate:
        reasons.append(f"success rate {stats.success_rate:.1%} < {thresholds.min_success_rate:.0%}")
    return (Verdict.BREACH, reasons) if reasons else (Verdict.OK, [])


@dataclass
class CapabilityReport:
    capability: Capability
    short: WindowStats
    long: WindowStats
    short_verdict: Verdict
    long_verdict: Verdict
    reasons: list[str]

    @property
    def breached(self) -> bool:
        return self.short_verdict is Verdict.BREACH and self.long_verdict is Verdict.BREACH

    def describe(self) -> dict[str, Any]:
        return {
            "short": {**self.short.describe(), "verdict": self.short_verdict.value},
            "long": {**self.long.describe(), "verdict": self.long_verdict.value},
            "reasons": self.reasons,
        }


@dataclass
class CheckResult:
    reports: list[CapabilityReport]
    action: str  # "none", "rolled_back", "would_roll_back", "nothing_to_roll_back"
    incident_id: str | None = None


@dataclass
class AutoRollbackMonitor:
    db: Database
    source: OutcomeSource
    rollout: RolloutSettings
    # Samples before this Unix time are ignored: the last rollback, whoever made it.
    ignore_before: float | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_settings(self.rollout)

    async def _ignore_before_last_rollback(self) -> None:
        async with self.db.session_scope(write=False) as session:
            last = await incident_repository.last_rollback_at(session)
        if last is not None:
            moment = last.timestamp()
            self.ignore_before = max(self.ignore_before or moment, moment)

    async def evaluate(self) -> list[CapabilityReport]:
        await self._ignore_before_last_rollback()
        reports = []
        for capability in Capability:
            short = await self.source.read_window(
                capability,
                self.rollout.auto_rollback_short_window_seconds,
                since=self.ignore_before,
            )
            long = await self.source.read_window(
                capability, self.rollout.auto_rollback_long_window_seconds, since=self.ignore_before
            )
            short_verdict, short_reasons = judge(short, self.thresholds)
            long_verdict, long_reasons = judge(long, self.thresholds)
            metrics.AUTO_ROLLBACK_VERDICTS.labels(capability.value, "short", short_verdict).inc()
            metrics.AUTO_ROLLBACK_VERDICTS.labels(capability.value, "long", long_verdict).inc()
            reasons = [f"1m: {r}" for r in short_reasons] + [f"5m: {r}" for r in long_reasons]
            reports.append(
                CapabilityReport(capability, short, long, short_verdict, long_verdict, reasons)
            )
        return reports

    async def check(self) -> CheckResult:
        """One evaluation; rolls back (or, in dry run, says it would) on a sustained breach."""
        reports = await self.evaluate()
        breached = [r for r in reports if r.breached]
        if not breached:
            return CheckResult(reports, "none")
        now = clock.now()
        summary = "; ".join(f"{r.capability.value}: {', '.join(r.reasons)}" for r in breached)
        async with self.db.session_scope(write=False) as session:
            states = await flag_service.flag_states(session)
        if not any(states.get(key, {}).get("enabled") for key in ROLLBACK_OFF):
            return CheckResult(reports, "nothing_to_roll_back")
        self.timeline.append({"at": now.isoformat(), "event": f"breach detected: {summary}"})
        measurements = {
            "thresholds": vars(self.thresholds),
            "capabilities": {r.capability.value: r.describe() for r in reports},
        }
        if self.rollout.auto_rollback_dry_run:
            log.warning("auto_rollback.dry_run", would="roll back", reasons=summary)
            return CheckResult(reports, "would_roll_back")
        log.critical("auto_rollback.rolling_back", reasons=summary)
        async with self.db.session_scope() as session:
            incident, version = await incident_service.rollback(
                session,
                actor=MONITOR_ACTOR,
                kind="automatic",
                reason=f"automatic rollback: {summary}",
                measurements=measurements,
                timeline=list(self.timeline),
            )
            incident_id = incident.id
            await raise_alert(
                session,
                ALERT_KEY,
                Severity.CRITICAL,
                f"EMERGENCY ROLLBACK: new path rolled back ({summary}); incident {incident_id}",
                runbook_link("alert-auto-rollback"),
                labels={"incident": incident_id},
            )
        metrics.ALERTS.labels(Severity.CRITICAL.value, "auto_rollback").inc()
        log.critical("auto_rollback.done", incident_id=incident_id, config_version=version)
        async with self.db.session_scope() as session:
            await incident_service.write_report_file(
                session, incident_id, self.rollout.incident_dir
            )
        self.ignore_before = clock.now().timestamp()
        self.timeline.clear()
        return CheckResult(reports, "rolled_back", incident_id)
