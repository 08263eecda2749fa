"""What the operations page charts, read from what the service already keeps.

No new storage: three sources exist, and each chart says which it uses.

* The rollout's per-second outcome window (``rollout/outcomes.py``): the new path's requests,
  errors and latency per capability for the last 10 minutes, in this process (every instance
  via Redis when the monitor reads it). Charted per minute.
* The alert evaluator's sample history (``observability/alert/evaluator.py``): snapshots of
  this process's metrics every ``AAYU_ALERT_EVALUATE_SECONDS`` for two hours, kept by the
  leader. HTTP error rate, p95 latency and shadow-write success come from the deltas between
  snapshots. A server that is not the leader (a separate ``aayu-accounts worker`` is) has no
  history, and the page says so.
* The audit trail: sign-ins (``identity:login:succeeded``) per hour over the last day.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from aayu_accounts.console.charts import Series
from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert.evaluator import (
    Snapshot,
    metrics_registry,
    take_snapshot,
    total,
)
from aayu_accounts.rollout.auto_rollback.monitor import Thresholds, Verdict, judge
from aayu_accounts.rollout.outcomes import Capability, OutcomeSource, OutcomeWindow, WindowStats

HTTP_REQUESTS = "aayu_http_requests_total"
HTTP_BUCKETS = "aayu_http_request_duration_seconds_bucket"
SHADOW_WRITES = "aayu_shadow_writes_total"
START_TIME = "aayu_process_start_time_seconds"
MRR_GOAL_CENTS = 500_000  # the strategy's success criterion: $5,000 MRR


def _is_5xx(labels: dict[str, str]) -> bool:
    return labels.get("status_class") == "5xx"


def _succeeded(labels: dict[str, str]) -> bool:
    return labels.get("outcome") == "success"


def _delta(
    after: Snapshot,
    before: Snapshot,
    name: str,
    match: Callable[[dict[str, str]], bool] | None = None,
) -> float:
    return max(0.0, total(after, name, match) - total(before, name, match))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def p95_from_buckets(snapshot_end: Snapshot, snapshot_start: Snapshot | None) -> float | None:
    """The upper bound (seconds) of the bucket holding the 95th percentile of the requests
    between two snapshots of the HTTP latency histogram; None without requests, inf when it
    is beyond the last bucket."""
    per_bound: dict[float, float] = {}
    for snapshot, sign in ((snapshot_end, 1.0), (snapshot_start or {}, -1.0)):
        for labels, value in snapshot.get(HTTP_BUCKETS, []):
            bound = float(labels.get("le", "inf").replace("+Inf", "inf"))
            per_bound[bound] = per_bound.get(bound, 0.0) + sign * value
    if not per_bound:
        return None
    bounds = sorted(per_bound)
    count = per_bound[bounds[-1]]
    if count <= 0:
        return None
    for bound in bounds:  # cumulative buckets: the first one holding 95 % of the requests
        if per_bound[bound] >= 0.95 * count:
            return bound
    return math.inf  # pragma: no cover - the +Inf bucket holds every request


@dataclass(frozen=True)
class HistorySeries:
    """Per-interval series from the evaluator's history (x: Unix seconds)."""

    error_rate: Series
    p95_seconds: Series
    shadow_success: Series
    samples: int


def history_series(
    history: Sequence[tuple[float, Snapshot]],
    *,
    now_wall: float | None = None,
    now_mono: float | None = None,
    points: int = 24,
) -> HistorySeries:
    """Deltas between up to ``points + 1`` evenly spaced snapshots of ``history`` (whose
    moments are ``clock.monotonic()`` readings, placed on the wall clock here)."""
    now_wall = clock.now().timestamp() if now_wall is None else now_wall
    now_mono = clock.monotonic() if now_mono is None else now_mono
    chosen: list[tuple[float, Snapshot]] = []
    if len(history) >= 2:
        step = max(1, math.ceil((len(history) - 1) / points))
        indexes = list(range(0, len(history), step))
        if indexes[-1] != len(history) - 1:
            indexes.append(len(history) - 1)
        chosen = [history[i] for i in indexes]
    errors: list[tuple[float, float | None]] = []
    latency: list[tuple[float, float | None]] = []
    shadow: list[tuple[float, float | None]] = []
    for (_, before), (moment, after) in pairwise(chosen):
        x = now_wall - (now_mono - moment)
        errors.append(
            (
                x,
                _ratio(
                    _delta(after, before, HTTP_REQUESTS, _is_5xx),
                    _delta(after, before, HTTP_REQUESTS),
                ),
            )
        )
        p95 = p95_from_buckets(after, before)
        latency.append((x, None if p95 is None else min(p95, 10.0)))
        shadow.append(
            (
                x,
                _ratio(
                    _delta(after, before, SHADOW_WRITES, _succeeded),
                    _delta(after, before, SHADOW_WRITES),
                ),
            )
        )
    return HistorySeries(
        error_rate=Series("5xx share", errors),
        p95_seconds=Series("p95", latency),
        shadow_success=Series("success", shadow),
        samples=len(history),
    )


@dataclass(frozen=True)
class NewPathSeries:
    error_rate: list[Series]
    p95_seconds: list[Series]
    requests: int


def new_path_series(
    window: OutcomeWindow, *, minutes: int = 10, now: float | None = None
) -> NewPathSeries:
    """The new path's error rate and p95 per minute and capability (this process)."""
    end = int(now if now is not None else clock.now().timestamp())
    errors, latency = [], []
    requests = 0
    for capability in Capability:
        error_points: list[tuple[float, float | None]] = []
        latency_points: list[tuple[float, float | None]] = []
        for minute in range(minutes - 1, -1, -1):
            at = end - 60 * minute
            stats = window.window(capability, 60, now=at)
            requests += stats.total
            error_points.append((at, stats.error_rate if stats.total else None))
            p95 = stats.p95_seconds()
            latency_points.append((at, None if p95 is None else min(p95, 10.0)))
        errors.append(Series(capability.value, error_points))
        latency.append(Series(capability.value, latency_points))
    return NewPathSeries(errors, latency, requests)


@dataclass(frozen=True)
class CapabilityStatus:
    capability: str
    short: WindowStats
    long: WindowStats
    short_verdict: str
    long_verdict: str
    reasons: list[str]

    @property
    def breached(self) -> bool:
        return self.short_verdict == Verdict.BREACH and self.long_verdict == Verdict.BREACH


async def capability_status(
    source: OutcomeSource, thresholds: Thresholds, *, short_seconds: float, long_seconds: float
) -> list[CapabilityStatus]:
    """The monitor's judgement of each capability now, without acting or counting it (the
    monitor's own verdict metrics stay the monitor's)."""
    statuses = []
    for capability in Capability:
        short = await source.read_window(capability, short_seconds)
        long = await source.read_window(capability, long_seconds)
        short_verdict, short_reasons = judge(short, thresholds)
        long_verdict, long_reasons = judge(long, thresholds)
        statuses.append(
            CapabilityStatus(
                capability.value,
                short,
                long,
                short_verdict.value,
                long_verdict.value,
                [f"1m: {r}" for r in short_reasons] + [f"5m: {r}" for r in long_reasons],
            )
        )
    return statuses


@dataclass
class ProcessTotals:
    """Counters since this process started (the success criteria's live part)."""

    requests: int = 0
    server_errors: int = 0
    shadow_writes: int = 0
    shadow_successes: int = 0
    started_at: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def availability(self) -> float | None:
        return _ratio(self.requests - self.server_errors, self.requests)

    @property
    def shadow_success(self) -> float | None:
        return _ratio(self.shadow_successes, self.shadow_writes)

    def uptime_seconds(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.started_at)


def process_totals(snapshot: Snapshot) -> ProcessTotals:
    started = [v for _labels, v in snapshot.get(START_TIME, [])]
    return ProcessTotals(
        requests=int(total(snapshot, HTTP_REQUESTS)),
        server_errors=int(total(snapshot, HTTP_REQUESTS, _is_5xx)),
        shadow_writes=int(total(snapshot, SHADOW_WRITES)),
        shadow_successes=int(total(snapshot, SHADOW_WRITES, _succeeded)),
        started_at=min(started) if started else None,
    )


def current_snapshot() -> Snapshot:
    """The few families the criteria read. With several workers (multi-process metrics) the
    whole registry is merged, as ``/metrics`` does; otherwise only these families are
    collected (a full collection walks every route's histogram buckets)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return take_snapshot(metrics_registry())
    snapshot: Snapshot = {}
    for metric in (metrics.HTTP_REQUESTS, metrics.SHADOW_WRITES, metrics.START_TIME):
        for family in metric.collect():
            for sample in family.samples:
                snapshot.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return snapshot


def hours_back(hours: int) -> tuple[datetime, datetime]:
    """[since, until) covering the last ``hours`` whole hours up to the next hour boundary."""
    until = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return until - timedelta(hours=hours), until


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
