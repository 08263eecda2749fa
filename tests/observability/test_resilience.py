"""kit/resilience: timeouts, retries with backoff (never a 4xx), pybreaker states, metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.kit import resilience
from aayu_accounts.kit.resilience import BreakerOpen, Dependency, Policy
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import wiring  # noqa: F401 - installs the metric observer
from aayu_accounts.observability.health import HealthMonitor

FAST = Policy("stripe", 0.2, 3, 0.001, 0.01, 3, 0.3)


class Upstream5xx(Exception):
    status_code = 503


class Upstream4xx(Exception):
    http_status = 402


def _dependency(policy: Policy = FAST) -> Dependency:
    dependency = resilience.dependency(policy.name)
    dependency.configure(policy)
    return dependency


async def test_transient_errors_are_retried_then_succeed() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Upstream5xx
        return "ok"

    assert await _dependency().call(flaky) == "ok"
    assert calls == 3


async def test_a_4xx_is_never_retried_and_never_counts_against_the_breaker() -> None:
    dependency = _dependency()
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise Upstream4xx

    for _ in range(5):
        with pytest.raises(Upstream4xx):
            await dependency.call(refused)
    assert calls == 5
    assert dependency.state == "closed"


async def test_httpx_status_errors_follow_the_status() -> None:
    request = httpx.Request("GET", "https://example.invalid")
    client_error = httpx.HTTPStatusError(
        "no", request=request, response=httpx.Response(404, request=request)
    )
    server_error = httpx.HTTPStatusError(
        "no", request=request, response=httpx.Response(502, request=request)
    )
    assert resilience.is_client_error(client_error)
    assert not resilience.is_client_error(server_error)


async def test_each_attempt_has_the_timeout() -> None:
    dependency = _dependency(replace(FAST, attempts=2, breaker_fail_max=10))

    async def hangs() -> None:
        await asyncio.sleep(5)

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await dependency.call(hangs)
    assert time.perf_counter() - started < 1.0  # two attempts of 0.2 s, not 10 s


async def test_breaker_opens_fails_fast_half_opens_and_closes() -> None:
    dependency = _dependency(replace(FAST, attempts=1))
    up = False
    calls = 0

    async def service() -> str:
        nonlocal calls
        calls += 1
        if not up:
            raise ConnectionRefusedError
        return "back"

    for _ in range(3):
        with pytest.raises((ConnectionRefusedError, BreakerOpen, Exception)):
            await dependency.call(service)
    assert dependency.state == "open"
    assert metrics.CIRCUIT_BREAKER_STATE.labels("stripe")._value.get() == 2

    attempted = calls
    started = time.perf_counter()
    with pytest.raises(BreakerOpen) as refused:
        await dependency.call(service)
    assert time.perf_counter() - started < 0.05
    assert calls == attempted  # refused without calling
    assert refused.value.status == 503
    assert refused.value.code == "dependency_unavailable"
    assert "Retry-After" in refused.value.headers

    await asyncio.sleep(0.35)
    up = True
    assert await dependency.call(service) == "back"  # the half-open trial
    assert dependency.state == "closed"
    assert metrics.CIRCUIT_BREAKER_STATE.labels("stripe")._value.get() == 0


async def test_a_failed_trial_opens_the_breaker_again() -> None:
    dependency = _dependency(replace(FAST, attempts=1))

    async def down() -> None:
        raise ConnectionResetError

    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017, PT011 - the last one is the breaker's
            await dependency.call(down)
    await asyncio.sleep(0.35)
    with pytest.raises(Exception):  # noqa: B017, PT011
        await dependency.call(down)
    assert dependency.state == "open"
    with pytest.raises(BreakerOpen):
        await dependency.call(down)


async def test_smtp_5xx_is_permanent_4xx_transient() -> None:
    import aiosmtplib

    smtp = resilience.dependency("smtp")
    assert smtp.is_permanent(aiosmtplib.SMTPResponseException(550, "no such user"))
    assert not smtp.is_permanent(aiosmtplib.SMTPResponseException(451, "try later"))


def test_every_strategy_dependency_has_a_policy() -> None:
    names = {d.name for d in resilience.all_dependencies()}
    assert names == {"database", "redis", "stripe", "smtp", "secret_store", "object_store"}
    for dependency in resilience.all_dependencies():
        assert dependency.policy.timeout_seconds > 0
        assert dependency.policy.attempts >= 1
        assert dependency.policy.breaker_fail_max >= 1


async def test_database_pool_pre_pings_and_every_process_checks_it_every_30_s(
    tmp_path: Path,
) -> None:
    defaults = Settings.model_validate({"env": "test", "var_dir": tmp_path})
    assert defaults.db_health_check_seconds == 30.0  # the strategy's interval
    pg = Settings.model_validate(
        {"env": "test", "var_dir": tmp_path, "database_url": "postgresql+asyncpg://u@h/db"}
    )
    engine = create_engine(pg)  # nothing connects until used
    try:
        assert engine.pool._pre_ping is True
    finally:
        await engine.dispose()

    # The monitor pings on its interval through the database breaker, and sets aayu_db_up.
    fast = defaults.model_copy(
        update={"database_url": "sqlite+aiosqlite://", "db_health_check_seconds": 0.1}
    )
    db = Database.from_settings(fast)
    pings = 0
    original = db.ping

    async def counted() -> None:
        nonlocal pings
        pings += 1
        await original()

    db.ping = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(HealthMonitor(db, fast).run_forever(stop))
    try:
        await asyncio.sleep(0.45)
    finally:
        stop.set()
        await task
        await db.dispose()
    assert 3 <= pings <= 6
    assert metrics.DB_UP._value.get() == 1
