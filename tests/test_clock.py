"""kit.clock: one injectable source of time, so tests move it instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock, SystemClock, use_clock

MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_system_clock_is_aware_utc() -> None:
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert clock.unix_now() == pytest.approx(datetime.now(UTC).timestamp(), abs=5)


def test_an_installed_clock_is_what_code_sees_until_it_is_removed() -> None:
    with use_clock(FrozenClock(MOMENT)) as frozen:
        assert isinstance(frozen, FrozenClock)
        assert clock.now() == MOMENT
        frozen.advance(timedelta(minutes=15))
        assert clock.now() == MOMENT + timedelta(minutes=15)
        frozen.advance(30)  # seconds
        assert clock.unix_now() == int((MOMENT + timedelta(minutes=15, seconds=30)).timestamp())
        frozen.set(MOMENT)
        assert clock.now() == MOMENT
    assert isinstance(clock.set_clock(SystemClock()), SystemClock), "restored afterwards"
    assert clock.now() != MOMENT


def test_a_clock_is_restored_even_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), use_clock(FrozenClock(MOMENT)):
        raise RuntimeError
    assert clock.now() != MOMENT


def test_a_frozen_clock_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(datetime(2026, 3, 1, 12, 0))  # noqa: DTZ001


def test_the_frozen_clock_fixture_moves_time_for_the_code_under_test(
    frozen_clock: FrozenClock,
) -> None:
    before = clock.now()
    frozen_clock.advance(timedelta(days=30))
    assert clock.now() - before == timedelta(days=30)
    # Durations are measured on the monotonic clock, which never stands still.
    assert clock.monotonic() <= clock.monotonic()
