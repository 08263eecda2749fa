"""The one source of time, so tests move it (lockouts, trials, idle timeouts) without sleeping.

Code calls ``clock.now()``; tests install a :class:`FrozenClock` with :func:`use_clock` and
advance it. ``monotonic()`` is for measuring durations and is never frozen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


_current: Clock = SystemClock()


def now() -> datetime:
    """The current time as an aware UTC datetime."""
    return _current.now()


def unix_now() -> int:
    return int(_current.now().timestamp())


def monotonic() -> float:
    return time.monotonic()


def set_clock(clock: Clock) -> Clock:
    global _current  # the process-wide clock is deliberately swappable
    previous, _current = _current, clock
    return previous


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)
