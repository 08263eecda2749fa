"""Sign-in throttling with issue 4's numbers, on the in-process store (SQLite backend) and on
Redis (PostgreSQL backend); sharing between instances and the fallback when Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from structlog.testing import capture_logs

from aayu_accounts.config import Settings
from aayu_accounts.identity.throttle import (
    FallbackStore,
    LoginThrottle,
    MemoryStore,
    ThrottleReason,
    ThrottleStore,
    build_throttle_store,
)
from aayu_accounts.kit.clock import FrozenClock
from tests.identity.throttle_fixtures import TcpProxy, redis_proxy, redis_settings, throttle_store

__all__ = ["redis_proxy", "redis_settings", "throttle_store"]

IP = "203.0.113.7"


def fallback_count() -> float:
    value = REGISTRY.get_sample_value("aayu_redis_fallbacks_total", {"component": "throttle"})
    return value or 0.0


ACCOUNT = "priya@example.com"


@pytest_asyncio.fixture(loop_scope="session")
async def throttle(
    throttle_store: ThrottleStore, settings: Settings, frozen_clock: FrozenClock
) -> AsyncIterator[LoginThrottle]:
    yield LoginThrottle(throttle_store, settings)


def test_the_store_follows_the_configuration(settings: Settings) -> None:
    store = build_throttle_store(settings)
    expected = FallbackStore if settings.redis_url else MemoryStore
    assert isinstance(store, expected)


async def test_pair_needs_captcha_after_3_failures_and_is_refused_15_minutes_after_5(
    throttle: LoginThrottle, frozen_clock: FrozenClock
) -> None:
    for _ in range(2):
        assert not (await throttle.check(IP, ACCOUNT)).captcha_required
        signals = await throttle.record_failure(IP, ACCOUNT)
        assert not signals.captcha_required
    await throttle.record_failure(IP, ACCOUNT)  # third
    decision = await throttle.check(IP, ACCOUNT)
    assert decision.captcha_required
    assert decision.retry_after is None
    assert decision.reason is ThrottleReason.PAIR_FAILURES
    await throttle.record_failure(IP, ACCOUNT)  # fourth: still only a CAPTCHA
    assert not (await throttle.check(IP, ACCOUNT)).refused
    signals = await throttle.record_failure(IP, ACCOUNT)  # fifth
    assert signals.pair_blocked
    assert not signals.ip_blocked
    assert not signals.brute_force_detected
    decision = await throttle.check(IP, ACCOUNT)
    assert decision.refused
    assert decision.retry_after == 900
    assert decision.reason is ThrottleReason.PAIR_BLOCKED

    # Other accounts from this IP, and this account from elsewhere, are not refused.
    assert not (await throttle.check(IP, "someone-else@example.com")).refused
    elsewhere = await throttle.check("198.51.100.9", ACCOUNT)
    assert not elsewhere.refused
    assert not elsewhere.captcha_required

    frozen_clock.advance(600)
    assert (await throttle.check(IP, ACCOUNT)).retry_after == 300
    frozen_clock.advance(299.5)
    assert (await throttle.check(IP, ACCOUNT)).retry_after == 1
    frozen_clock.advance(0.5)
    after = await throttle.check(IP, ACCOUNT)
    assert not after.refused
    assert not after.captcha_required  # the failures have left the 15-minute window too


async def test_a_correct_password_does_not_lift_the_block(throttle: LoginThrottle) -> None:
    for _ in range(5):
        await throttle.record_failure(IP, ACCOUNT)
    # The caller checks before verifying; even a success recorded by mistake lifts nothing.
    await throttle.record_success(IP, ACCOUNT)
    assert (await throttle.check(IP, ACCOUNT)).retry_after == 900


async def test_success_forgives_the_pair_but_not_the_ip(
    throttle: LoginThrottle, settings: Settings
) -> None:
    for _ in range(2):
        await throttle.record_failure(IP, ACCOUNT)
    await throttle.record_success(IP, ACCOUNT)
    for _ in range(2):
        await throttle.record_failure(IP, ACCOUNT)
    assert not (await throttle.check(IP, ACCOUNT)).captcha_required
    # The IP's count (4) went on: six more failures on other accounts reach its threshold.
    for index in range(6):
        await throttle.record_failure(IP, f"other{index}@example.com")
    decision = await throttle.check(IP, ACCOUNT)
    assert decision.captcha_required
    assert decision.reason is ThrottleReason.IP_FAILURES


async def test_success_with_nothing_to_forgive_asks_the_store_nothing(
    throttle_store: ThrottleStore, settings: Settings, frozen_clock: FrozenClock
) -> None:
    cleared: list[object] = []

    class Watched:
        # The real store; only ``clear`` is watched.
        def __getattr__(self, name: str) -> object:
            return getattr(throttle_store, name)

        async def clear(self, keys: object) -> None:
            cleared.append(keys)
            await throttle_store.clear(keys)  # type: ignore[arg-type]

    throttle = LoginThrottle(Watched(), settings)  # type: ignore[arg-type]
    clean = await throttle.check(IP, ACCOUNT)
    assert clean.pair_failures == 0
    await throttle.record_success(IP, ACCOUNT, checked=clean)
    assert cleared == []  # a correct first try: no round trip
    for _ in range(2):
        await throttle.record_failure(IP, ACCOUNT)
    after_failures = await throttle.check(IP, ACCOUNT)
    assert after_failures.pair_failures == 2
    await throttle.record_success(IP, ACCOUNT, checked=after_failures)
    assert len(cleared) == 1
    assert (await throttle.check(IP, ACCOUNT)).pair_failures == 0  # forgiven


async def test_failures_slide_out_of_the_window(
    throttle: LoginThrottle, frozen_clock: FrozenClock
) -> None:
    await throttle.record_failure(IP, ACCOUNT)
    await throttle.record_failure(IP, ACCOUNT)
    frozen_clock.advance(15 * 60 + 1)
    await throttle.record_failure(IP, ACCOUNT)
    await throttle.record_failure(IP, ACCOUNT)
    assert not (await throttle.check(IP, ACCOUNT)).captcha_required
    await throttle.record_failure(IP, ACCOUNT)
    assert (await throttle.check(IP, ACCOUNT)).captcha_required


async def test_credential_stuffing_from_one_ip_captcha_after_10_block_after_50(
    throttle: LoginThrottle, frozen_clock: FrozenClock
) -> None:
    for index in range(9):
        await throttle.record_failure(IP, f"victim{index}@example.com")
    assert not (await throttle.check(IP, "fresh@example.com")).captcha_required
    await throttle.record_failure(IP, "victim9@example.com")  # tenth
    decision = await throttle.check(IP, "fresh@example.com")
    assert decision.captcha_required
    assert decision.reason is ThrottleReason.IP_FAILURES
    assert not decision.refused

    detections = 0
    for index in range(10, 50):
        signals = await throttle.record_failure(IP, f"victim{index}@example.com")
        detections += signals.brute_force_detected
        assert signals.ip_blocked == (index == 49)
        assert signals.brute_force_scope == ("ip" if index == 49 else None)
    assert detections == 1
    decision = await throttle.check(IP, "fresh@example.com")
    assert decision.retry_after == 900
    assert decision.reason is ThrottleReason.IP_BLOCKED
    # The accounts themselves are not locked for their owners elsewhere.
    assert not (await throttle.check("198.51.100.9", "victim3@example.com")).captcha_required
    frozen_clock.advance(900)
    assert not (await throttle.check(IP, "fresh@example.com")).refused


async def test_one_account_attacked_from_many_ips_needs_captcha_but_is_never_locked(
    throttle: LoginThrottle,
) -> None:
    detections = 0
    for index in range(99):
        signals = await throttle.record_failure(f"10.0.{index // 250}.{index % 250}", ACCOUNT)
        detections += signals.brute_force_detected
    assert not (await throttle.check("192.0.2.1", ACCOUNT)).captcha_required
    signals = await throttle.record_failure("10.9.9.9", ACCOUNT)  # the 100th in the hour
    assert signals.brute_force_detected
    assert signals.brute_force_scope == "account"
    assert detections == 0
    for index in range(150):
        signals = await throttle.record_failure(f"10.1.{index // 250}.{index % 250}", ACCOUNT)
        assert not signals.pair_blocked
        assert not signals.ip_blocked
    decision = await throttle.check("192.0.2.1", ACCOUNT)
    assert decision.captcha_required
    assert decision.reason is ThrottleReason.ACCOUNT_FAILURES
    assert decision.retry_after is None  # never a hard lock


async def test_account_window_is_one_hour(
    throttle: LoginThrottle, frozen_clock: FrozenClock
) -> None:
    for index in range(100):
        await throttle.record_failure(f"10.2.0.{index}", ACCOUNT)
    assert (await throttle.check("192.0.2.1", ACCOUNT)).captcha_required
    frozen_clock.advance(3599)
    assert (await throttle.check("192.0.2.1", ACCOUNT)).captcha_required
    frozen_clock.advance(1)
    assert not (await throttle.check("192.0.2.1", ACCOUNT)).captcha_required


async def test_account_keys_are_case_insensitive(throttle: LoginThrottle) -> None:
    for _ in range(3):
        await throttle.record_failure(IP, "Priya@Example.com ")
    assert (await throttle.check(IP, "priya@example.com")).captcha_required


async def test_two_instances_sharing_redis_enforce_one_set_of_limits(
    redis_settings: Settings, frozen_clock: FrozenClock
) -> None:
    first_store = build_throttle_store(redis_settings)
    second_store = build_throttle_store(redis_settings)
    try:
        first = LoginThrottle(first_store, redis_settings)
        second = LoginThrottle(second_store, redis_settings)
        await first.record_failure(IP, ACCOUNT)
        await second.record_failure(IP, ACCOUNT)
        await first.record_failure(IP, ACCOUNT)
        assert (await second.check(IP, ACCOUNT)).captcha_required
        await second.record_failure(IP, ACCOUNT)
        signals = await first.record_failure(IP, ACCOUNT)  # fifth, across both
        assert signals.pair_blocked
        assert (await second.check(IP, ACCOUNT)).retry_after == 900
        # Stuffing spread over both instances is counted once, and detected once.
        detections = 0
        for index in range(50):
            instance = first if index % 2 else second
            signals = await instance.record_failure("198.51.100.77", f"v{index}@example.com")
            detections += signals.brute_force_detected
        assert detections == 1
        assert (await first.check("198.51.100.77", "new@example.com")).refused
        assert (await second.check("198.51.100.77", "new@example.com")).refused
    finally:
        await first_store.aclose()
        await second_store.aclose()


async def test_redis_keys_hold_neither_emails_nor_addresses(
    redis_settings: Settings, frozen_clock: FrozenClock
) -> None:
    store = build_throttle_store(redis_settings)
    client = Redis.from_url(str(redis_settings.redis_url))
    try:
        throttle = LoginThrottle(store, redis_settings)
        for _ in range(5):
            await throttle.record_failure(IP, ACCOUNT)
        keys = [k.decode() async for k in client.scan_iter(f"{redis_settings.redis_prefix}*")]
        assert len(keys) >= 4
        for key in keys:
            assert "example" not in key
            assert IP not in key
            ttl = await client.ttl(key)
            assert 0 < ttl <= 3600 + 61  # everything expires
    finally:
        await client.aclose()
        await store.aclose()


async def test_redis_down_falls_back_in_process_stricter_and_alerts(
    redis_settings: Settings, frozen_clock: FrozenClock
) -> None:
    broken = redis_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    store = build_throttle_store(broken)
    throttle = LoginThrottle(store, broken)
    before = fallback_count()
    try:
        with capture_logs() as logs:
            decision = await throttle.check(IP, ACCOUNT)
            await throttle.check(IP, ACCOUNT)
        assert store.degraded
        assert fallback_count() > before  # counted for dashboards and alert rules
        # Blind to other instances: every attempt needs a CAPTCHA while degraded.
        assert decision.captcha_required
        assert decision.reason is ThrottleReason.STORE_DEGRADED
        alerts = [entry for entry in logs if entry["event"] == "throttle_store_degraded"]
        assert len(alerts) == 1
        assert alerts[0]["log_level"] == "error"
        # Limits still hold in-process.
        for _ in range(5):
            await throttle.record_failure(IP, ACCOUNT)
        assert (await throttle.check(IP, ACCOUNT)).retry_after == 900
    finally:
        await store.aclose()


async def test_fallback_keeps_what_it_counted_when_redis_fails_mid_attack(
    redis_settings: Settings, redis_proxy: TcpProxy, frozen_clock: FrozenClock
) -> None:
    via_proxy = redis_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{redis_proxy.port}/0"}
    )
    store = build_throttle_store(via_proxy)
    throttle = LoginThrottle(store, via_proxy)
    try:
        for _ in range(4):
            await throttle.record_failure(IP, ACCOUNT)
        assert not store.degraded
        await redis_proxy.stop()  # Redis goes away in the middle of the attack
        with capture_logs() as logs:
            signals = await throttle.record_failure(IP, ACCOUNT)
        assert store.degraded
        assert [e["event"] for e in logs].count("throttle_store_degraded") == 1
        assert signals.pair_blocked  # the four counted before the failure were kept in-process
        assert (await throttle.check(IP, ACCOUNT)).retry_after == 900
    finally:
        await store.aclose()


async def test_throttle_returns_to_redis_when_it_comes_back(
    redis_settings: Settings, redis_proxy: TcpProxy, frozen_clock: FrozenClock
) -> None:
    via_proxy = redis_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{redis_proxy.port}/0",
            "redis_breaker_reset_seconds": 0.01,
        }
    )
    store = build_throttle_store(via_proxy)
    other_instance = build_throttle_store(redis_settings)
    throttle = LoginThrottle(store, via_proxy)
    try:
        await redis_proxy.stop()
        await throttle.record_failure(IP, ACCOUNT)
        assert store.degraded
        await redis_proxy.start()
        await asyncio.sleep(0.02)  # the retry interval is real time (monotonic), not the clock
        with capture_logs() as logs:
            for _ in range(3):
                await throttle.record_failure(IP, ACCOUNT)
        assert not store.degraded
        assert "throttle_store_recovered" in [e["event"] for e in logs]
        # What was counted after recovery is shared again: another instance sees it.
        shared = await LoginThrottle(other_instance, redis_settings).check(IP, ACCOUNT)
        assert shared.captcha_required
        assert shared.reason is ThrottleReason.PAIR_FAILURES
    finally:
        await store.aclose()
        await other_instance.aclose()


async def test_memory_store_forgets_expired_keys(frozen_clock: FrozenClock) -> None:
    store = MemoryStore()
    now = frozen_clock.now().timestamp()
    for index in range(600):
        await store.hit([(f"k{index}", 60)], now)
    later = now + 61
    for index in range(600):
        await store.hit([(f"fresh{index}", 60)], later)
    counts, _ = await store.read([("k1", 60), ("fresh1", 60)], [], later)
    assert counts == [0, 1]
    assert len(store._events) < 1000  # the first 600 were swept


@pytest.mark.parametrize("count", [0, 1])
async def test_memory_instances_do_not_share(count: int, frozen_clock: FrozenClock) -> None:
    # Embedded mode is one process; two in-process stores are deliberately independent.
    settings = Settings()
    first = LoginThrottle(MemoryStore(), settings)
    second = LoginThrottle(MemoryStore(), settings)
    for _ in range(3 + count):
        await first.record_failure(IP, ACCOUNT)
    assert (await first.check(IP, ACCOUNT)).captcha_required
    assert not (await second.check(IP, ACCOUNT)).captcha_required
