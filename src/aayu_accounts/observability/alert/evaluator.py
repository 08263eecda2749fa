"""The leader's in-process evaluation of :data:`.rules.RULES`.

Every run samples this process's metric registry (all local workers' in multi-process mode),
keeps a short history, and judges each rule over its window from counter deltas, the way
Prometheus' ``increase()`` would. A verdict is firing, clear, or *inconclusive* (too few
samples): inconclusive changes nothing, so quiet periods neither fire nor resolve.

With several hosts each leader sees its own host's traffic; deployments that run Prometheus
use the exported rules, which see everything.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import repository, service
from aayu_accounts.observability.alert.rules import (
    DAILY_SUMMARY_KEY,
    DAILY_SUMMARY_RUNBOOK,
    RULES,
    Rule,
)
from aayu_accounts.observability.alert.severity import Severity

log = structlog.get_logger("aayu_accounts.alerts")

Labels = frozenset[tuple[str, str]]
Snapshot = dict[str, list[tuple[dict[str, str], float]]]
HISTORY_SECONDS = 2 * 3600


def metrics_registry() -> CollectorRegistry:
    """This process's registry, or every live worker's in multi-process mode (as /metrics)."""
    return metrics.collector_registry()


def take_snapshot(registry: CollectorRegistry) -> Snapshot:
    snapshot: Snapshot = {}
    for family in registry.collect():
        for sample in family.samples:
            snapshot.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return snapshot


def total(
    snapshot: Snapshot, name: str, match: Callable[[dict[str, str]], bool] | None = None
) -> float:
    return sum(v for labels, v in snapshot.get(name, []) if match is None or match(labels))


def highest(snapshot: Snapshot, name: str) -> float | None:
    values = [v for _labels, v in snapshot.get(name, [])]
    return max(values) if values else None


@dataclass(frozen=True)
class Verdict:
    firing: bool | None  # None: inconclusive
    detail: str = ""


def host_usage(path: Path) -> tuple[float | None, float | None]:
    """(disk, memory) used shares; None where this platform does not say."""
    disk: float | None = None
    try:
        usage = shutil.disk_usage(path if path.exists() else Path.cwd())
        disk = usage.used / usage.total if usage.total else None
    except OSError:
        disk = None
    memory: float | None = None
    try:
        fields: dict[str, int] = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
        if fields.get("MemTotal"):
            memory = 1 - fields.get("MemAvailable", 0) / fields["MemTotal"]
    except (OSError, ValueError, IndexError):
        memory = None
    return disk, memory


@dataclass
class Evaluator:
    """Samples, judges, raises and resolves. One per leader process."""

    settings: Settings
    rules: tuple[Rule, ...] = RULES
    registry_factory: Callable[[], CollectorRegistry] = metrics_registry
    history: deque[tuple[float, Snapshot]] = field(default_factory=deque)
    last_summary_day: date | None = None

    def __post_init__(self) -> None:
        _latest[:] = [self]
        self.rules = tuple(
            replace(r, threshold=float(self.settings.alert_failed_logins_per_minute))
            if r.key == "auth.failed_login_spike"
            else r
            for r in self.rules
        )

    # --- sampling ------------------------------------------------------------------------
    def sample(self) -> Snapshot:
        disk, memory = host_usage(self.settings.var_dir)
        if disk is not None:
            metrics.DISK_USAGE.set(disk)
        if memory is not None:
            metrics.MEMORY_USAGE.set(memory)
        now = clock.monotonic()
        snapshot = take_snapshot(self.registry_factory())
        self.history.append((now, snapshot))
        while self.history and now - self.history[0][0] > HISTORY_SECONDS:
            self.history.popleft()
        return snapshot

    def _base(self, window: int, *, offset: int = 0) -> Snapshot | None:
        """The snapshot at (now - offset - window), or the oldest one we have."""
        if not self.history:
            return None
        now = self.history[-1][0]
        target = now - offset - window
        chosen: Snapshot | None = None
        for moment, snapshot in self.history:
            if moment <= target:
                chosen = snapshot
            else:
                break
        if chosen is None and offset == 0:
            chosen = self.history[0][1]
        return chosen

    def _at(self, offset: int) -> Snapshot | None:
        if offset == 0:
            return self.history[-1][1] if self.history else None
        return self._base(0, offset=offset)

    def delta(
        self,
        name: str,
        window: int,
        match: Callable[[dict[str, str]], bool] | None = None,
        *,
        offset: int = 0,
    ) -> float | None:
        end = self._at(offset)
        start = self._base(window, offset=offset)
        if end is None or start is None:
            return None
        return max(0.0, total(end, name, match) - total(start, name, match))

    # --- the checks ------------------------------------------------------------------------
    def check(self, rule: Rule) -> Verdict:
        checker = _CHECKS.get(rule.key)
        if checker is None:
            return Verdict(None)
        return checker(self, rule)

    async def run(self, db: Database) -> list[str]:
        """One evaluation (the leader's periodic duty). Returns the keys firing after it."""
        self.sample()
        verdicts = [(rule, self.check(rule)) for rule in self.rules]
        async with db.session_scope() as session:
            for rule, verdict in verdicts:
                if verdict.firing is True:
                    summary = rule.summary + (f" ({verdict.detail})" if verdict.detail else "")
                    await service.raise_alert(
                        session, rule.key, rule.severity, summary, rule.runbook
                    )
                elif verdict.firing is False:
                    await service.resolve_alert(session, rule.key)
            await service.mark_repeats_due(session)
            await self._maybe_daily_summary(session)
            counts = await repository.firing_counts(session)
            firing = [a.key for a in await repository.firing(session)]
        for severity in Severity:
            metrics.ALERTS_FIRING.labels(severity.value).set(counts.get(severity.value, 0))
        return firing

    async def _maybe_daily_summary(self, session: AsyncSession) -> None:
        now = clock.now()
        if now.hour != self.settings.alert_daily_summary_hour_utc:
            return
        if self.last_summary_day == now.date():
            return
        self.last_summary_day = now.date()
        await service.notify_once(
            session,
            DAILY_SUMMARY_KEY,
            Severity.LOW,
            self.summary_text(),
            DAILY_SUMMARY_RUNBOOK,
        )

    def summary_text(self) -> str:
        day = 24 * 3600

        def count(name: str, match: Callable[[dict[str, str]], bool] | None = None) -> int:
            return int(self.delta(name, day, match) or 0)

        requests = count("aayu_http_requests_total")
        errors = count("aayu_http_requests_total", lambda lb: lb.get("status_class") == "5xx")
        slow = requests - count(
            "aayu_http_request_duration_seconds_bucket", lambda lb: lb.get("le") == "1.0"
        )
        rate = f"{errors / requests:.2%}" if requests else "n/a"
        return (
            f"Daily summary: sign-ups {count('aayu_signups_total')}, "
            f"requests {requests} (server errors {rate}, slower than 1 s {max(slow, 0)}), "
            f"failed sign-ins {count('aayu_auth_login_failures_total')}, "
            f"payments failed {count('aayu_billing_payments_total', _failed)} of "
            f"{count('aayu_billing_payments_total')}, "
            f"data exports {count('aayu_data_exports_total')}, "
            f"new-path requests {count('aayu_rollout_requests_total', _new_path)}"
        )


# The newest evaluator built in this process: the operations console charts its history
# (the only time series the service keeps; on a separate worker the server has none).
_latest: list[Evaluator] = []


def latest() -> Evaluator | None:
    return _latest[-1] if _latest else None


def _failed(labels: dict[str, str]) -> bool:
    return labels.get("outcome") == "failed"


def _new_path(labels: dict[str, str]) -> bool:
    return labels.get("path") == "new"


def _is_auth(labels: dict[str, str]) -> bool:
    return labels.get("route", "").startswith("/api/v1/auth/")


def _is_5xx(labels: dict[str, str]) -> bool:
    return labels.get("status_class") == "5xx"


def _ratio_verdict(bad: float | None, all_: float | None, rule: Rule, *, at_least: bool) -> Verdict:
    if bad is None or all_ is None or all_ < max(rule.min_samples, 1):
        return Verdict(None)
    ratio = bad / all_
    firing = ratio >= rule.threshold if at_least else ratio > rule.threshold
    return Verdict(firing, f"{ratio:.1%} of {int(all_)}")


def _auth_down(ev: Evaluator, rule: Rule) -> Verdict:
    all_ = ev.delta("aayu_http_requests_total", rule.window_seconds, _is_auth)
    bad = ev.delta(
        "aayu_http_requests_total", rule.window_seconds, lambda lb: _is_auth(lb) and _is_5xx(lb)
    )
    return _ratio_verdict(bad, all_, rule, at_least=True)


def _payments(ev: Evaluator, rule: Rule) -> Verdict:
    all_ = ev.delta("aayu_billing_payments_total", rule.window_seconds)
    bad = ev.delta("aayu_billing_payments_total", rule.window_seconds, _failed)
    return _ratio_verdict(bad, all_, rule, at_least=False)


def _audit_chain(ev: Evaluator, rule: Rule) -> Verdict:
    snapshot = ev.history[-1][1] if ev.history else {}
    value = highest(snapshot, "aayu_audit_chain_broken")
    if value is None:
        return Verdict(None)
    return Verdict(value >= rule.threshold)


def _error_rate(ev: Evaluator, rule: Rule) -> Verdict:
    all_ = ev.delta("aayu_http_requests_total", rule.window_seconds)
    bad = ev.delta("aayu_http_requests_total", rule.window_seconds, _is_5xx)
    return _ratio_verdict(bad, all_, rule, at_least=False)


def _response_time(ev: Evaluator, rule: Rule) -> Verdict:
    # p95 above 3 s  <=>  more than 5 % of requests took longer than the 3.0 bucket.
    all_ = ev.delta("aayu_http_request_duration_seconds_count", rule.window_seconds)
    fast = ev.delta(
        "aayu_http_request_duration_seconds_bucket",
        rule.window_seconds,
        lambda lb: lb.get("le") == str(float(rule.threshold)),
    )
    if all_ is None or fast is None or all_ < max(rule.min_samples, 1):
        return Verdict(None)
    slow_share = (all_ - fast) / all_
    return Verdict(slow_share > 0.05, f"{slow_share:.1%} slower than {rule.threshold:g} s")


def _failed_logins(ev: Evaluator, rule: Rule) -> Verdict:
    failures = ev.delta("aayu_auth_login_failures_total", rule.window_seconds)
    if failures is None:
        return Verdict(None)
    return Verdict(failures > rule.threshold, f"{int(failures)} in {rule.window_seconds} s")


def _checkpoint_uploads(ev: Evaluator, rule: Rule) -> Verdict:
    # A missing bucket or refused credentials answer 4xx and never open the object store's
    # breaker: the failures themselves must raise the alert. One successful run in the
    # window does not clear it; a window (two hourly runs) without failures does.
    failed = ev.delta(
        "aayu_audit_checkpoints_total",
        rule.window_seconds,
        lambda lb: lb.get("outcome") == "upload_failed",
    )
    if failed is None:
        return Verdict(None)
    return Verdict(failed >= rule.threshold, f"{int(failed)} failed uploads")


def _gauge_above(name: str) -> Callable[[Evaluator, Rule], Verdict]:
    def check(ev: Evaluator, rule: Rule) -> Verdict:
        value = highest(ev.history[-1][1], name) if ev.history else None
        if value is None:
            return Verdict(None)
        return Verdict(value > rule.threshold, f"{value:.0%}")

    return check


def _slow_queries(ev: Evaluator, rule: Rule) -> Verdict:
    def slow(offset: int) -> float | None:
        count = ev.delta("aayu_db_query_duration_seconds_count", rule.window_seconds, offset=offset)
        fast = ev.delta(
            "aayu_db_query_duration_seconds_bucket",
            rule.window_seconds,
            lambda lb: lb.get("le") == "1.0",
            offset=offset,
        )
        return None if count is None or fast is None else count - fast

    now, before = slow(0), slow(rule.window_seconds)
    if now is None:
        return Verdict(None)
    increasing = now > rule.threshold and (before is None or now > before)
    return Verdict(increasing, f"{int(now)} statements over 1 s")


_CHECKS: dict[str, Callable[[Evaluator, Rule], Verdict]] = {
    "auth.down": _auth_down,
    "billing.payment_failures": _payments,
    "audit.chain_broken": _audit_chain,
    "http.error_rate": _error_rate,
    "http.response_time": _response_time,
    "auth.failed_login_spike": _failed_logins,
    "audit.checkpoint_upload_failed": _checkpoint_uploads,
    "host.disk_usage": _gauge_above("aayu_disk_usage_ratio"),
    "host.memory_usage": _gauge_above("aayu_memory_usage_ratio"),
    "db.slow_queries_increasing": _slow_queries,
}


def checked_keys() -> Iterable[str]:
    return _CHECKS.keys()
