"""Redis taken away (a loopback proxy in front of the real server is cut): sign-in limits and
lockouts keep being enforced in-process and get stricter, nothing hangs, the Redis alert fires
and resolves, and the throttle returns to Redis once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.throttle import LoginThrottle, build_throttle_store
from aayu_accounts.identity.throttle.store import REDIS_RETRY_SECONDS
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import redis_client, resilience
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import service
from aayu_accounts.observability.alert.wiring import BreakerAlerts
from aayu_accounts.observability.health import HealthMonitor
from tests.faults.proxy import TcpProxy
from tests.fixtures.services import REDIS_URL
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
