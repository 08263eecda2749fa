"""Redis taken away (a loopback proxy in front of the real server is cut): sign-in limits and
lockouts keep being enforced in-process and get stricter, nothing hangs, the Redis alert fires
and resolves, and the throttle returns to Redis once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from aayu_accounts import migrate
from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.identity.throttle import LoginThrottle, build_throttle_store
from aayu_accounts.identity.throttle.store import REDIS_RETRY_SECONDS
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import redis_client, resilience
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import service
from aayu_accounts.observability.alert.wiring import BreakerAlerts
from aayu_accounts.observability.health import HealthMonitor
from tests.faults.proxy import TcpProxy
from tests.faults.traffic import PASSWORD, REGISTER, sign_up_body, stored_users
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings
from tests.fixtures.services import REDIS_URL, postgres_available, redis_available, require
from tests.observability.receiver import Receiver, webhook_receiver


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


def _has(message: dict[str, object], key: str, status: str) -> bool:
    alerts = message["alerts"]
    assert isinstance(alerts, list)
    return any(a["key"] == key and a["status"] == status for a in alerts)


async def _shared_keys(prefix: str) -> int:
    direct = Redis.from_url(REDIS_URL)
    try:
        return len([k async for k in direct.scan_iter(match=f"{prefix}*")])
    finally:
        await direct.aclose()


@pytest.mark.committing
@pytest.mark.timeout(60)
async def test_redis_outage_keeps_limits_alerts_and_returns_to_redis(
    backend: str, settings: Settings, committing_db: Database, receiver: Receiver
) -> None:
    if backend != "postgresql":
        pytest.skip("Redis is paired with PostgreSQL (production mode); SQLite runs in-process")
    upstream = Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    async with TcpProxy(
        str(upstream.get("host", "127.0.0.1")), int(upstream.get("port", 6379))
    ) as proxy:
        prefix = f"aayu-fault:{uuid.uuid4().hex[:10]}:"
        settings = settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
                "redis_prefix": prefix,
                "redis_breaker_reset_seconds": 0.5,
                "alert_webhook_urls": [receiver.url],
                "alert_group_wait_seconds": 0,
                "alert_log": False,
            }
        )
        resilience.configure(settings)
        service.configure(settings)
        client = redis_client.create_redis(settings)
        assert client is not None
        throttle = LoginThrottle(build_throttle_store(settings, redis=client), settings)
        monitor = HealthMonitor(committing_db, settings, redis=client)
        alerts = BreakerAlerts(committing_db)
        resilience.add_state_observer(alerts)
        worker = Worker(committing_db)
        try:
            # Healthy: counts live in Redis, shared with every instance.
            assert await monitor.check_redis() is True
            for _ in range(settings.login_pair_block_after):
                await throttle.record_failure("203.0.113.7", "victim@clinic-example.org")
            assert (await throttle.check("203.0.113.7", "victim@clinic-example.org")).retry_after
            assert await _shared_keys(prefix) > 0
            assert not (
                await throttle.check("198.51.100.1", "fresh@clinic-example.org")
            ).captcha_required

            proxy.cut()
            started = time.perf_counter()
            # The lockout earned before the outage still holds...
            assert (await throttle.check("203.0.113.7", "victim@clinic-example.org")).retry_after
            # ... a new attacker is still locked out after the same number of failures ...
            for _ in range(settings.login_pair_block_after):
                await throttle.record_failure("203.0.113.9", "other@clinic-example.org")
            blocked = await throttle.check("203.0.113.9", "other@clinic-example.org")
            assert blocked.retry_after is not None
            # ... and everyone else gets a CAPTCHA: stricter while blind, never looser.
            fresh = await throttle.check("198.51.100.2", "fresh@clinic-example.org")
            assert fresh.captcha_required
            assert fresh.retry_after is None
            assert time.perf_counter() - started < 3.0  # nothing waited on the dead socket

            # The health check trips the Redis breaker: the alert fires.
            for _ in range(resilience.dependency("redis").policy.breaker_fail_max):
                assert await monitor.check_redis() is False
            assert resilience.dependency("redis").state == "open"
            assert metrics.REDIS_UP._value.get() == 0
            await alerts.drain()
            await worker.run_once()
            fired = await receiver.wait_for(lambda m: _has(m, "redis.unavailable", "firing"))
            assert fired["severity"] == "high"

            # Back: the breaker's trial closes it, the alert resolves ...
            proxy.restore()
            await asyncio.sleep(settings.redis_breaker_reset_seconds + 0.1)
            assert await monitor.check_redis() is True
            assert resilience.dependency("redis").state == "closed"
            await alerts.drain()
            await worker.run_once()
            await receiver.wait_for(lambda m: _has(m, "redis.unavailable", "resolved"))

            # ... and the throttle returns to the shared store by itself.
            await asyncio.sleep(REDIS_RETRY_SECONDS + 0.1)
            before = await _shared_keys(prefix)
            await throttle.record_failure("192.0.2.44", "back@clinic-example.org")
            assert await _shared_keys(prefix) > before
            assert not (
                await throttle.check("198.51.100.3", "new@clinic-example.org")
            ).captcha_required
        finally:
            resilience.remove_state_observer(alerts)
            await client.aclose()
            direct = Redis.from_url(REDIS_URL)
            keys = [k async for k in direct.scan_iter(match=f"{prefix}*")]
            if keys:
                await direct.delete(*keys)
            await direct.aclose()


# --- the whole service under HTTP traffic ------------------------------------------------------

METRICS_TOKEN = "r" * 40
# The per-address API limit while Redis is there; each instance enforces a quarter of it alone
# (AAYU_RATE_LIMIT_FALLBACK_DIVISOR, default 4) while Redis is away.
SHARED_LIMIT = 40


@dataclass
class Answer:
    started: float
    seconds: float
    status: int
    code: str | None


@pytest_asyncio.fixture(loop_scope="session")
async def own_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own (the app commits for real)."""
    require("PostgreSQL", postgres_available())
    require("Redis", redis_available())
    name = f"aayu_fault_{uuid.uuid4().hex[:10]}"
    url = await create_pg_database(name)
    engine = create_engine(make_settings(url, tmp_path))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        await drop_pg_database(name)


def _client(app: FastAPI, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://testserver",
    )


async def _timed(call: Awaitable[httpx.Response]) -> Answer:
    started = time.monotonic()
    response = await call
    code = response.json().get("code") if response.status_code >= 400 else None
    return Answer(started, time.monotonic() - started, response.status_code, code)


async def _login(client: httpx.AsyncClient, email: str) -> Answer:
    return await _timed(
        client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-" + PASSWORD})
    )


@pytest.mark.committing
@pytest.mark.timeout(120)
@pytest.mark.parametrize("hang", [False, True], ids=["reset", "partition"])
async def test_redis_outage_under_http_traffic_keeps_limits_loses_nothing_and_alerts(
    own_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang: bool
) -> None:
    """The whole app (create_app, its lifespan, its own health monitor and breaker alerts) with
    Redis cut under sign-up traffic: no request fails or hangs, every acknowledged sign-up is
    stored, the API limit and the sign-in lockouts hold (stricter), the Redis alert fires and
    resolves through the webhook, and the limits go back to Redis by themselves."""
    monkeypatch.setenv("AAYU_RATE_LIMIT_DEFAULT", f"{SHARED_LIMIT}/minute")
    # Sign-up traffic is not what is limited here: the burst and the sign-ins are.
    monkeypatch.setenv("AAYU_RATE_LIMIT_ROUTES", '{"/api/v1/auth/register": "100000/minute"}')
    monkeypatch.setenv("AAYU_REDIS_RETRY_SECONDS", "1")
    upstream = Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    prefix = f"aayu-fault:{uuid.uuid4().hex[:10]}:"
    async with (
        TcpProxy(str(upstream.get("host", "127.0.0.1")), int(upstream.get("port", 6379))) as proxy,
        webhook_receiver() as receiver,
    ):
        settings = make_settings(
            own_database,
            tmp_path,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_prefix=prefix,
            redis_health_check_seconds=0.2,
            redis_breaker_reset_seconds=0.5,
            argon2_memory_kib=1024,
            argon2_time_cost=1,
            # Failures lock a pair out without a CAPTCHA first, so HTTP alone can earn a lockout.
            login_pair_captcha_after=10,
            login_pair_block_after=5,
            metrics_token=METRICS_TOKEN,
            alert_webhook_urls=[receiver.url],
            alert_group_wait_seconds=0,
            alert_log=False,
        )
        app = create_app(settings)
        signups: list[tuple[str, Answer]] = []
        stop = asyncio.Event()
        async with LifespanManager(app):
            worker = Worker(app.state.db)

            async def deliver_alerts() -> None:  # the job worker, as a server runs it
                while not stop.is_set():
                    await worker.run_once()
                    await asyncio.sleep(0.1)

            background = [asyncio.create_task(deliver_alerts())]
            try:

                async def traffic(address: str) -> None:
                    async with _client(app, address) as client:
                        while not stop.is_set():
                            email, body = sign_up_body("redis")
                            answer = await _timed(client.post(REGISTER, json=body))
                            signups.append((email, answer))
                            await asyncio.sleep(0.1)

                background += [asyncio.create_task(traffic(f"127.0.1.{i}")) for i in range(3)]

                # Healthy: a pair earns its lockout, counted in Redis.
                async with _client(app, "203.0.113.7") as attacker:
                    earned = [await _login(attacker, "victim@clinic-example.org") for _ in range(6)]
                assert [a.code for a in earned[:5]] == ["invalid_credentials"] * 5, earned
                assert earned[5].status == 429
                assert earned[5].code == "too_many_attempts"
                assert await _shared_keys(prefix) > 0
                await asyncio.sleep(1.0)

                cut_at = time.monotonic()
                proxy.cut(hang=hang)
                await asyncio.sleep(0.5)

                # The lockout earned before the outage still holds ...
                async with _client(app, "203.0.113.7") as attacker:
                    still = await _login(attacker, "victim@clinic-example.org")
                assert (still.status, still.code) == (429, "too_many_attempts"), still
                # ... a new attacker never gets a password checked without a CAPTCHA ...
                async with _client(app, "203.0.113.9") as attacker:
                    tries = [await _login(attacker, "other@clinic-example.org") for _ in range(8)]
                assert {a.code for a in tries} <= {"captcha_required", "too_many_attempts"}, tries
                # ... and the API limit is a quarter of the shared one: stricter, never looser.
                async with _client(app, "198.51.100.20") as burst:
                    answers = [
                        await _timed(burst.get("/api/v1/auth/captcha"))
                        for _ in range(SHARED_LIMIT // 2)
                    ]
                allowed = [a for a in answers if a.status == 200]
                refused = [a for a in answers if a.status == 429]
                assert 1 <= len(allowed) <= SHARED_LIMIT // 4, answers
                assert len(allowed) + len(refused) == len(answers), answers
                assert {a.code for a in refused} == {"rate_limited"}

                # The service's own health monitor opens the Redis breaker: the alert fires.
                fired = await receiver.wait_for(
                    lambda m: _has(m, "redis.unavailable", "firing"), within=15
                )
                assert fired["severity"] == "high"
                async with _client(app, "127.0.0.1") as operator:
                    scraped = await operator.get(
                        "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
                    )
                assert scraped.status_code == 200
                assert "aayu_redis_up 0.0" in scraped.text
                assert 'aayu_circuit_breaker_state{dependency="redis"} 2.0' in scraped.text
                assert "aayu_redis_fallbacks_total{" in scraped.text
                await asyncio.sleep(1.0)

                restored_at = time.monotonic()
                proxy.restore()
                await receiver.wait_for(
                    lambda m: _has(m, "redis.unavailable", "resolved"), within=15
                )
                # Back to the shared counts by themselves (the throttle retries Redis after
                # REDIS_RETRY_SECONDS): a fresh pair is judged on its own again, in Redis.
                await asyncio.sleep(REDIS_RETRY_SECONDS + 0.5)
                before = await _shared_keys(prefix)
                async with _client(app, "192.0.2.44") as back:
                    fresh = await _login(back, "back@clinic-example.org")
                assert (fresh.status, fresh.code) == (401, "invalid_credentials"), fresh
                assert await _shared_keys(prefix) > before
            finally:
                stop.set()
                await asyncio.gather(*background)

    during = [a for _e, a in signups if cut_at <= a.started < restored_at]
    assert during, "no sign-up was sent while Redis was away"
    # Losing Redis costs no request: every sign-up is answered, none with a 5xx, none hung.
    assert all(a.status == 202 for _e, a in signups), [
        (round(a.started - cut_at, 2), a.status, a.code) for _e, a in signups if a.status != 202
    ]
    assert max(a.seconds for a in during) < 3.0, sorted(a.seconds for a in during)[-3:]
    # Every acknowledged sign-up is stored (the database is this test's own: nothing else
    # creates users in it, and the sign-ins above name unknown addresses).
    assert await stored_users(own_database, tmp_path) == len(signups)
