"""The one way to open Redis: timeouts from the Redis policy, no hidden retry loops.

redis-py would otherwise wait on a dead socket for as long as the OS lets it; every command
here gives up after the policy's timeout, so a Redis outage costs a request half a second at
most, and callers (throttle, rate limits, flag fan-out) fall back to in-process state.
Retries and the breaker belong to :func:`aayu_accounts.kit.resilience.dependency` ("redis"),
so they are not repeated inside the client (redis-py's default would retry three times with
backoff of up to seconds, on every command). Every Redis client of the service, server or CLI,
comes from here.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aayu_accounts.config import Settings
from aayu_accounts.kit.resilience import REDIS, dependency


def create_redis(settings: Settings, url: str | None = None) -> Redis | None:
    """A client for ``url`` (default ``AAYU_REDIS_URL``), or None when Redis is not configured."""
    target = url or settings.redis_url
    if not target:
        return None
    # The setting the Redis policy is configured from; read here so a CLI command, which
    # configures no policies, gets the same timeouts as the server.
    timeout = settings.redis_timeout_seconds
    client: Redis = Redis.from_url(
        target,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=max(1, int(settings.redis_health_check_seconds)),
    )
    return client


async def ping(client: Redis) -> bool:
    """One PING through the Redis breaker; False (never an exception) when it fails."""
    try:
        await dependency(REDIS).breaker_call(client.ping)
    except Exception:  # the caller only needs up or down
        return False
    return True
