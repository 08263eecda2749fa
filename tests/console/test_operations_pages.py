"""The operations console: what it charts (from the stores that exist) and its pages."""

from __future__ import annotations

from aayu_accounts.console.operations.signals import (
    capability_status,
    duration_text,
    history_series,
    new_path_series,
    p95_from_buckets,
    process_totals,
)
from aayu_accounts.observability.alert.evaluator import Snapshot
from aayu_accounts.rollout.auto_rollback.monitor import Thresholds
from aayu_accounts.rollout.outcomes import Capability, Outcome, OutcomeWindow


def _snapshot(  # noqa: PLR0917 - six counters, positional for the tables below
    ok: int, errors: int, fast: int, slow: int, shadow_ok: int, shadow_bad: int
) -> Snapshot:
    """A metrics snapshot: requests by status class, a latency histogram with two buckets
    (<= 0.1 s, <= 3 s) over one route, and shadow writes by outcome."""
    route = {"method": "GET", "route": "/x"}
    return {
        "aayu_http_requests_total": [
            ({**route, "status_class": "2xx"}, float(ok)),
            ({**route, "status_class": "5xx"}, float(errors)),
        ],
        "aayu_http_request_duration_seconds_bucket": [
            ({**route, "le": "0.1"}, float(fast)),
            ({**route, "le": "3.0"}, float(fast + slow)),
            ({**route, "le": "+Inf"}, float(fast + slow)),
        ],
        "aayu_shadow_writes_total": [
            ({"outcome": "success"}, float(shadow_ok)),
            ({"outcome": "failure"}, float(shadow_bad)),
        ],
        "aayu_process_start_time_seconds": [({}, 1000.0)],
    }


def test_history_becomes_per_interval_rates() -> None:
    history = [
        (100.0, _snapshot(0, 0, 0, 0, 0, 0)),
        (130.0, _snapshot(90, 10, 100, 0, 10, 0)),  # 10 % errors, all fast
        (160.0, _snapshot(190, 10, 100, 100, 15, 5)),  # no errors, half slow; 5 of 10 shadow ok
        (190.0, _snapshot(190, 10, 100, 100, 15, 5)),  # idle: no data, not zero
    ]
    series = history_series(history, now_wall=10_000.0, now_mono=190.0)
    assert series.samples == 4
    assert series.error_rate.points == [(9940.0, 0.1), (9970.0, 0.0), (10_000.0, None)]
    assert series.p95_seconds.points == [(9940.0, 0.1), (9970.0, 3.0), (10_000.0, None)]
    assert series.shadow_success.points == [(9940.0, 1.0), (9970.0, 0.5), (10_000.0, None)]


def test_long_history_is_thinned_to_the_requested_points() -> None:
    history = [(float(i), _snapshot(i, 0, i, 0, 0, 0)) for i in range(241)]
    series = history_series(history, now_wall=1000.0, now_mono=240.0, points=24)
    assert len(series.error_rate.points) == 24
    assert series.error_rate.points[-1][0] == 1000.0
    assert history_series(history[:1]).error_rate.points == []


def test_p95_of_the_histogram_between_snapshots() -> None:
    assert p95_from_buckets(_snapshot(0, 0, 94, 6, 0, 0), None) == 3.0
    assert p95_from_buckets(_snapshot(0, 0, 95, 5, 0, 0), None) == 0.1
    assert p95_from_buckets({}, None) is None


def test_new_path_series_per_minute_and_capability() -> None:
    window = OutcomeWindow()
    now = 1_000_000
    for _ in range(9):
        window.record(Capability.AUTH, Outcome.OK, 0.02, at=now - 30)
    window.record(Capability.AUTH, Outcome.ERROR, 4.0, at=now - 30)
    series = new_path_series(window, minutes=3, now=now)
    auth, documents = series.error_rate
    assert auth.label == "auth"
    assert auth.points == [(now - 120, None), (now - 60, None), (now, 0.1)]
    assert [y for _x, y in documents.points] == [None, None, None]
    assert series.p95_seconds[0].points[-1] == (now, 5.0)  # the 4 s request, in the 5 s bucket
    assert series.requests == 10


async def test_capability_status_judges_without_acting(frozen_clock: object) -> None:
    window = OutcomeWindow()
    for _ in range(60):
        window.record(Capability.AUTH, Outcome.ERROR, 0.01)
    statuses = await capability_status(
        window, Thresholds(min_requests=50), short_seconds=60, long_seconds=300
    )
    auth = next(s for s in statuses if s.capability == "auth")
    assert auth.breached
    assert any("error rate" in reason for reason in auth.reasons)
    documents = next(s for s in statuses if s.capability == "documents")
    assert documents.short_verdict == "inconclusive"
    assert not documents.breached


def test_process_totals_and_durations() -> None:
    totals = process_totals(_snapshot(190, 10, 0, 0, 15, 5))
    assert totals.availability == 0.95
    assert totals.shadow_success == 0.75
    assert totals.uptime_seconds(now=4600.0) == 3600.0
    assert process_totals({}).availability is None
    assert duration_text(3600 * 26 + 60) == "1 d 2 h"
    assert duration_text(3900) == "1 h 5 min"
    assert duration_text(None) == "unknown"
