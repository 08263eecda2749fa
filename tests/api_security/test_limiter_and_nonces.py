"""The limiter and the nonce memory: shared through Redis, in-process otherwise, and stricter
(never looser) when Redis fails."""

from __future__ import annotations

import asyncio
import secrets
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio

from aayu_accounts.api_security.rate_limit.limiter import Limiter, parse_limit
from aayu_accounts.api_security.rate_limit.middleware import limit_for
from aayu_accounts.api_security.request_signing.nonces import MemoryNonceStore, RedisNonceStore
from aayu_accounts.observability import metrics
from tests.client.server import free_port
from tests.fixtures.services import REDIS_URL, redis_available, require


@pytest_asyncio.fixture(loop_scope="session")
async def redis() -> AsyncIterator[Any]:
    require("Redis", redis_available())
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def dead_redis() -> AsyncIterator[Any]:
    # A real client pointed at a port nobody listens on: every call fails as in an outage.
    client = redis_asyncio.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    yield client
    await client.aclose()


def prefix() -> str:
    return f"aayu-test:{uuid.uuid4().hex[:12]}:"


async def test_memory_limits_count_per_identity() -> None:
    limiter = Limiter()
    item = parse_limit("3/minute")
    first = [(await limiter.hit(item, "ip", "a")).allowed for _ in range(4)]
    assert first == [True, True, True, False]
    assert (await limiter.hit(item, "ip", "b")).allowed


async def test_redis_limits_are_shared_between_instances(redis: Any) -> None:
    shared = prefix()
    one, two = Limiter(redis=redis, key_prefix=shared), Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("3/minute")
    assert (await one.hit(item, "user", "u")).allowed
    assert (await two.hit(item, "user", "u")).allowed
    assert (await one.hit(item, "user", "u")).allowed
    refused = await two.hit(item, "user", "u")
    assert not refused.allowed
    assert refused.headers()["Retry-After"] == refused.headers()["RateLimit-Reset"]


async def test_concurrent_hits_are_each_counted_in_one_round_trip(redis: Any) -> None:
    """Hits that arrive together share one pipelined round trip, yet each is counted: of 12
    simultaneous requests against 5/minute exactly 5 pass, and a second instance agrees."""
    shared = prefix()
    one, two = Limiter(redis=redis, key_prefix=shared), Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("5/minute")
    sent: list[int] = []
    original = redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        sent.append(1)
        return original(*args, **kwargs)

    redis.pipeline = counting_pipeline
    try:
        decisions = await asyncio.gather(*(one.hit(item, "user", "burst") for _ in range(12)))
    finally:
        del redis.pipeline
    assert [d.allowed for d in decisions].count(True) == 5
    assert len(sent) <= 2  # one batch (a second only if Redis had to load the script)
    assert not (await two.hit(item, "user", "burst")).allowed
    assert (await two.hit(item, "user", "someone else")).allowed


async def test_without_redis_each_instance_is_stricter(dead_redis: Any) -> None:
    before = metrics.REDIS_FALLBACKS.labels("rate_limit")._value.get()
    limiter = Limiter(redis=dead_redis, key_prefix=prefix(), fallback_divisor=4)
    item = parse_limit("8/minute")
    allowed = [(await limiter.hit(item, "ip", "a")).allowed for _ in range(4)]
    assert allowed == [True, True, False, False]  # 8 / 4 per instance
    assert metrics.REDIS_FALLBACKS.labels("rate_limit")._value.get() > before


async def test_nonces_are_shared_through_redis(redis: Any) -> None:
    shared = prefix()
    one = RedisNonceStore(redis, shared, fallback=MemoryNonceStore())
    two = RedisNonceStore(redis, shared, fallback=MemoryNonceStore())
    assert await one.first_use("ak_1", "nonce-aaaaaaaaaaaa", 600)
    assert not await two.first_use("ak_1", "nonce-aaaaaaaaaaaa", 600)
    assert await two.first_use("ak_2", "nonce-aaaaaaaaaaaa", 600)  # per key


async def test_nonces_fall_back_to_this_process_when_redis_fails(dead_redis: Any) -> None:
    store = RedisNonceStore(dead_redis, prefix(), fallback=MemoryNonceStore())
    assert await store.first_use("ak_1", "nonce-bbbbbbbbbbbb", 600)
    assert not await store.first_use("ak_1", "nonce-bbbbbbbbbbbb", 600)


async def test_memory_nonces_expire_and_stay_bounded() -> None:
    store = MemoryNonceStore(max_entries=100)
    for n in range(250):
        assert await store.first_use("ak", f"nonce-{n:012d}", 600)
    assert len(store) <= 101
    assert await store.first_use("ak", "nonce-short-lived", 0)
    assert await store.first_use("ak", "nonce-short-lived", 0)  # a zero window forgets at once


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/health", None),
        ("/api/v1/me", "100/minute"),
        ("/api/v1/auth/login", "10/minute"),
        ("/api/v1/auth/login/extra", "10/minute"),
        ("/api/v1/auth/captcha", "30/minute"),
    ],
)
def test_route_overrides_take_the_longest_prefix(path: str, expected: str | None) -> None:
    routes = {"/health": "none", "/api/v1/auth/": "30/minute", "/api/v1/auth/login": "10/minute"}
    _bucket, item = limit_for(path, "100/minute", routes)
    if expected is None:
        assert item is None
    else:
        assert item == parse_limit(expected)


async def test_remembered_nonces_cost_little_memory_each() -> None:
    # Every signed request's nonce is held for the whole window (600 s): at a few hundred
    # signed requests a second this map is the process's largest. Each entry keeps a hash,
    # not the request's key id and nonce strings.
    store = MemoryNonceStore()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            # New string objects per request, as parsed from each request's headers.
            key_id = "".join(("ak_", "0123456789abcdef"))
            assert await store.first_use(key_id, secrets.token_urlsafe(16) + str(n), 600)
        per_nonce = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert per_nonce < 200, per_nonce
    assert await store.first_use("ak_0123456789abcdef", "nonce-once", 600)
    assert not await store.first_use("".join(("ak_0123", "456789abcdef")), "nonce-once", 600)
