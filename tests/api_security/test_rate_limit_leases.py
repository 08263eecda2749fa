"""Leases of the shared rate-limit counter (issue 4): a busy key stops paying a Redis round trip
per request, yet every allowed request was counted in Redis first, instances still share one
limit, slow callers stay exact and the last hits before the limit are counted one by one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest_asyncio
import redis.asyncio as redis_asyncio
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from aayu_accounts.api_security.rate_limit.limiter import Limiter, parse_limit
from aayu_accounts.observability import metrics
from tests.client.server import free_port
from tests.fixtures.services import REDIS_URL, redis_available, require


@pytest_asyncio.fixture(loop_scope="session")
async def redis() -> AsyncIterator[Any]:
    require("Redis", redis_available())
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    yield client
    keys = [key async for key in client.scan_iter("aayu-lease-test:*")]
    if keys:
        await client.delete(*keys)
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
    return f"aayu-lease-test:{uuid.uuid4().hex[:12]}:"


@contextmanager
def script_calls(redis: Any) -> Iterator[list[int]]:
    """How many acquire scripts the limiters send (commands per pipeline executed)."""
    sent: list[int] = []
    original = redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        async def counted(*e_args: Any, **e_kwargs: Any) -> Any:
            sent.append(len(pipe.command_stack))
            return await execute(*e_args, **e_kwargs)

        pipe.execute = counted
        return pipe

    redis.pipeline = counting_pipeline
    try:
        yield sent
    finally:
        del redis.pipeline


async def counted(redis: Any, shared: str, item: RateLimitItem, *identifiers: str) -> int:
    """The hits Redis holds for a key, read through ``limits`` itself."""
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=f"{shared}limits",
        connection_pool=redis.connection_pool,
    )
    stats = await SlidingWindowCounterRateLimiter(storage).get_window_stats(item, *identifiers)
    return item.amount - stats.remaining


async def allowed_of(limiter: Limiter, item: RateLimitItem, key: str, times: int) -> int:
    decisions = await asyncio.gather(*(limiter.hit(item, "user", key) for _ in range(times)))
    return [d.allowed for d in decisions].count(True)


async def test_a_hot_key_takes_leases_instead_of_a_call_per_request(redis: Any) -> None:
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("1000/hour")  # leases up to 32 hits
    with script_calls(redis) as sent:
        one_by_one = [(await limiter.hit(item, "user", "steady")).allowed for _ in range(300)]
    assert all(one_by_one)
    assert sum(sent) <= 300 // 8, sent  # 1, 2, 4, ... 32 at a time: about 14 calls
    # Every allowed request was counted first; at most one lease's worth is counted unused.
    assert 300 <= await counted(redis, shared, item, "user", "steady") < 300 + 32

    with script_calls(redis) as sent:
        assert await allowed_of(limiter, item, "burst", 300) == 300
    assert sum(sent) <= 300 // 8, sent
    assert 300 <= await counted(redis, shared, item, "user", "burst") < 300 + 32


async def test_instances_sharing_redis_never_allow_more_than_the_limit(redis: Any) -> None:
    shared = prefix()
    one = Limiter(redis=redis, key_prefix=shared, lease_seconds=5.0)
    two = Limiter(redis=redis, key_prefix=shared, lease_seconds=5.0)
    item = parse_limit("300/hour")  # leases up to 30 hits
    allowed = 0
    for _ in range(8):
        both = await asyncio.gather(allowed_of(one, item, "u", 50), allowed_of(two, item, "u", 50))
        allowed += sum(both)
        for limiter in (one, two):
            allowed += (await limiter.hit(item, "user", "u")).allowed
    assert await counted(redis, shared, item, "user", "u") == 300
    # Hits leased but unused make it stricter by at most one lease per instance...
    assert 300 - 2 * 29 <= allowed <= 300
    # ...and they are still there to be used while the leases last: the total is the limit.
    for _ in range(40):
        for limiter in (one, two):
            allowed += (await limiter.hit(item, "user", "u")).allowed
    assert allowed == 300


async def test_a_slow_caller_gets_exactly_the_limit(redis: Any) -> None:
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared, lease_seconds=0.02)
    item = parse_limit("40/hour")  # leases up to 4 hits, were requests to come fast
    with script_calls(redis) as sent:
        decisions = []
        for _ in range(41):
            decisions.append((await limiter.hit(item, "user", "slow")).allowed)
            await asyncio.sleep(0.04)  # slower than a lease lasts
    assert decisions == [True] * 40 + [False]
    assert sent == [1] * 41  # one single hit per request: nothing leased, nothing lost
    assert await counted(redis, shared, item, "user", "slow") == 40


async def test_leases_lapse_and_the_table_stays_bounded(redis: Any) -> None:
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared, lease_seconds=0.3, lease_keys=20)
    item = parse_limit("1000/hour")
    with script_calls(redis) as sent:
        for _ in range(8):
            assert (await limiter.hit(item, "user", "u")).allowed
    assert sent == [1, 1, 1, 1]  # leases of 1, 2, 4 and 8 hits
    assert await counted(redis, shared, item, "user", "u") == 15  # 7 of the last one unused

    await asyncio.sleep(0.4)  # the lease lapses: its 7 hits are not used any more
    with script_calls(redis) as sent:
        assert (await limiter.hit(item, "user", "u")).allowed
    assert sent == [1]
    # A lapsed lease is followed by one as large as the use it saw: here a single hit.
    assert await counted(redis, shared, item, "user", "u") == 16

    for n in range(100):
        assert (await limiter.hit(item, "user", f"key-{n}")).allowed
    assert limiter.leased_keys <= 20  # full of live leases: further keys pay exact hits
    await asyncio.sleep(1.1)  # lapsed, and the once-a-second sweep is due
    assert (await limiter.hit(item, "user", "one more")).allowed
    assert limiter.leased_keys == 1  # the lapsed ones were dropped


async def test_refusals_near_the_limit_are_exact(redis: Any) -> None:
    shared = prefix()
    one = Limiter(redis=redis, key_prefix=shared, lease_seconds=5.0)
    two = Limiter(redis=redis, key_prefix=shared, lease_seconds=5.0)
    item = parse_limit("100/hour")  # leases up to 10 hits
    assert await allowed_of(one, item, "together", 150) == 100
    assert await counted(redis, shared, item, "user", "together") == 100
    refused = await two.hit(item, "user", "together")
    assert not refused.allowed
    headers = refused.headers()
    assert headers["RateLimit-Limit"] == "100"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["Retry-After"] == headers["RateLimit-Reset"]
    assert int(headers["Retry-After"]) > 3000  # the hour's window

    sequential = [(await one.hit(item, "user", "in turn")).allowed for _ in range(120)]
    assert sequential == [True] * 100 + [False] * 20
    assert await counted(redis, shared, item, "user", "in turn") == 100


async def test_small_limits_are_never_leased(redis: Any) -> None:
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("10/minute")  # a tenth of the limit is one hit: exact, as before
    with script_calls(redis) as sent:
        decisions = [(await limiter.hit(item, "ip", "a")).allowed for _ in range(11)]
    assert decisions == [True] * 10 + [False]
    assert sent == [1] * 11
    assert limiter.leased_keys == 0


async def test_a_failed_lease_falls_back_to_the_stricter_memory_limit(dead_redis: Any) -> None:
    """Requests queued on a lease whose Redis call fails are not let through: each falls back
    to this instance's share of the limit, as a single hit does."""
    before = metrics.REDIS_FALLBACKS.labels("rate_limit")._value.get()
    limiter = Limiter(redis=dead_redis, key_prefix=prefix(), fallback_divisor=4)
    item = parse_limit("400/hour")  # leasable with Redis; 100 per instance without it
    assert await allowed_of(limiter, item, "u", 150) == 100
    assert metrics.REDIS_FALLBACKS.labels("rate_limit")._value.get() > before
    assert limiter.leased_keys <= 1


async def test_a_queue_of_requests_is_counted_in_one_call_not_one_lease_at_a_time(
    redis: Any,
) -> None:
    # 200 requests for one key arrive together: the lease fetch in flight counts every one of
    # them (they are real requests), so they are answered after one round trip, not after
    # 200 / 32 round trips taken in turn.
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("1000/hour")
    with script_calls(redis) as sent:
        assert await allowed_of(limiter, item, "queue", 200) == 200
    assert len(sent) <= 2, sent
    assert 200 <= await counted(redis, shared, item, "user", "queue") < 200 + 32


async def test_a_round_trip_slower_than_the_lease_does_not_void_the_queued_hits(
    redis: Any,
) -> None:
    # A saturated event loop can take longer to bring Redis' answer back than a lease lives;
    # the hits counted for the queued requests are still theirs (they used to lapse unused,
    # and every queued request fetched again: one round trip per request, in turn).
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared, lease_seconds=1e-6)
    item = parse_limit("1000/hour")
    with script_calls(redis) as sent:
        assert await allowed_of(limiter, item, "slow", 200) == 200
    assert len(sent) <= 2, sent
    assert await counted(redis, shared, item, "user", "slow") == 200


async def test_a_queue_larger_than_the_budget_is_decided_hit_by_hit(redis: Any) -> None:
    shared = prefix()
    limiter = Limiter(redis=redis, key_prefix=shared)
    item = parse_limit("100/hour")
    assert await allowed_of(limiter, item, "over", 150) == 100
    assert await counted(redis, shared, item, "user", "over") == 100
