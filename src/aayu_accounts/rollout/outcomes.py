"""What happened on each path, per second: the auto-rollback monitor's raw material.

The path router records every request it serves (capability, path, outcome, seconds) in
this process's :class:`OutcomeWindow`, which aggregates per second in memory (no I/O on the
request path). With Redis configured, a flusher adds each second's counts into Redis every
second, so the leader's monitor sees the traffic of every instance; without Redis (embedded,
one process) the monitor reads the local window.

Latency is kept as a histogram over ``LATENCY_BUCKETS``; "p95 above 3 s" is exactly "more
than 5 % of requests above 3 s", and 3.0 is a bucket boundary (NOTES.md), so the default
threshold check is exact; a threshold between boundaries is checked at the next boundary up.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aayu_accounts.kit import clock
from aayu_accounts.observability.metrics import LATENCY_BUCKETS

BOUNDS: tuple[float, ...] = LATENCY_BUCKETS
RETENTION_SECONDS = 600


class Capability(StrEnum):
    AUTH = "auth"
    DOCUMENTS = "documents"


class RoutePath(StrEnum):
    NEW = "new"
    LEGACY = "legacy"


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"


def _empty_histogram() -> list[int]:
    return [0] * (len(BOUNDS) + 1)


@dataclass
class Counts:
    total: int = 0
    errors: int = 0
    timeouts: int = 0
    histogram: list[int] = field(default_factory=_empty_histogram)

    def add(self, outcome: Outcome, seconds: float) -> None:
        self.total += 1
        if outcome is Outcome.ERROR:
            self.errors += 1
        elif outcome is Outcome.TIMEOUT:
            self.timeouts += 1
        self.histogram[bisect.bisect_left(BOUNDS, seconds)] += 1

    def merge(self, other: Counts) -> None:
        self.total += other.total
        self.errors += other.errors
        self.timeouts += other.timeouts
        for index, count in enumerate(other.histogram):
            self.histogram[index] += count

    def as_fields(self) -> dict[str, int]:
        fields = {"total": self.total, "errors": self.errors, "timeouts": self.timeouts}
        fields.update({f"b{i}": c for i, c in enumerate(self.histogram) if c})
        return fields

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Counts:
        def value(name: str) -> int:
            raw = fields.get(name, fields.get(name.encode(), 0))
            return int(raw or 0)

        counts = cls(total=value("total"), errors=value("errors"), timeouts=value("timeouts"))
        counts.histogram = [value(f"b{i}") for i in range(len(BOUNDS) + 1)]
        return counts


@dataclass(frozen=True)
class WindowStats:
    """The new path of one capability over one window."""

    window_seconds: float
    total: int
    errors: int
    timeouts: int
    histogram: tuple[int, ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0

    @property
    def success_rate(self) -> float:
        return (self.total - self.errors - self.timeouts) / self.total if self.total else 1.0

    def share_slower_than(self, seconds: float) -> float:
        """Share of requests above ``seconds`` (exact at a bucket boundary)."""
        if not self.total:
            return 0.0
        first_above = bisect.bisect_left(BOUNDS, seconds) + 1
        return sum(self.histogram[first_above:]) / self.total

    def p95_seconds(self) -> float | None:
        """The upper bound of the bucket holding the 95th percentile (None without data)."""
        if not self.total:
            return None
        rank = math.ceil(0.95 * self.total)
        seen = 0
        for index, count in enumerate(self.histogram):
            seen += count
            if seen >= rank:
                return BOUNDS[index] if index < len(BOUNDS) else math.inf
        return math.inf

    def describe(self) -> dict[str, Any]:
        p95 = self.p95_seconds()
        return {
            "window_s": self.window_seconds,
            "requests": self.total,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "error_rate": round(self.error_rate, 4),
            "success_rate": round(self.success_rate, 4),
            "p95_le_s": None if p95 is None else (p95 if math.isfinite(p95) else "inf"),
        }


def stats_from(counts: Iterable[Counts], window_seconds: float) -> WindowStats:
    merged = Counts()
    for item in counts:
        merged.merge(item)
    return WindowStats(
        window_seconds, merged.total, merged.errors, merged.timeouts, tuple(merged.histogram)
    )


class OutcomeWindow:
    """Per-second counts of the new path, per capability, for this process."""

    def __init__(self) -> None:
        self._seconds: dict[tuple[Capability, int], Counts] = {}
        self._unflushed: dict[tuple[Capability, int], Counts] = {}

    def record(
        self, capability: Capability, outcome: Outcome, seconds: float, *, at: float | None = None
    ) -> None:
        second = int(at if at is not None else clock.now().timestamp())
        for table in (self._seconds, self._unflushed):
            table.setdefault((capability, second), Counts()).add(outcome, seconds)
        if len(self._seconds) > 4 * RETENTION_SECONDS:
            self._prune(second)

    def _prune(self, now_second: int) -> None:
        oldest = now_second - RETENTION_SECONDS
        self._seconds = {k: v for k, v in self._seconds.items() if k[1] >= oldest}

    async def read_window(
        self, capability: Capability, seconds: float, *, since: float | None = None
    ) -> WindowStats:
        return self.window(capability, seconds, since=since)

    def window(
        self,
        capability: Capability,
        seconds: float,
        *,
        now: float | None = None,
        since: float | None = None,
    ) -> WindowStats:
        end = int(now if now is not None else clock.now().timestamp())
        start = end - int(seconds)
        if since is not None:
            start = max(start, int(since) - 1)
        return stats_from(
            (
                c
                for (cap, second), c in self._seconds.items()
                if cap is capability and start < second <= end
            ),
            seconds,
        )

    def take_unflushed(self) -> dict[tuple[Capability, int], Counts]:
        taken, self._unflushed = self._unflushed, {}
        return taken

    def restore_unflushed(self, taken: dict[tuple[Capability, int], Counts]) -> None:
        """Put back counts a failed flush could not deliver (merged with newer ones)."""
        for key, counts in taken.items():
            self._unflushed.setdefault(key, Counts()).merge(counts)


class RedisOutcomes:
    """Every instance's counts, summed per second in Redis hashes that expire on their own."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, capability: Capability, second: int) -> str:
        return f"{self.prefix}rollout:outcomes:{capability.value}:{second}"

    async def push(self, taken: dict[tuple[Capability, int], Counts]) -> None:
        if not taken:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (capability, second), counts in taken.items():
            key = self._key(capability, second)
            for name, value in counts.as_fields().items():
                pipe.hincrby(key, name, value)
            pipe.expire(key, RETENTION_SECONDS)
        await pipe.execute()

    async def read_window(
        self, capability: Capability, seconds: float, *, since: float | None = None
    ) -> WindowStats:
        end = int(clock.now().timestamp())
        first = end - int(seconds) + 1
        if since is not None:
            first = max(first, int(since))
        pipe = self.redis.pipeline(transaction=False)
        for second in range(first, end + 1):
            pipe.hgetall(self._key(capability, second))
        rows = await pipe.execute()
        return stats_from((Counts.from_fields(row) for row in rows if row), seconds)


class OutcomeSource(Protocol):
    """Where the monitor reads windows from: this process, or every instance via Redis."""

    async def read_window(
        self, capability: Capability, seconds: float, *, since: float | None = None
    ) -> WindowStats: ...
