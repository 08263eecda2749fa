"""The invalidation channel every per-process cache listens on (kit/invalidation_listener.py):
subscribed before start() returns, the owner told to forget everything whenever messages may
have been missed, resubscribed on a fresh connection after a loss, and never stopping the
instance when Redis is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from aayu_accounts.billing.entitlement.cache import EntitlementCache, OrgSnapshot
from aayu_accounts.kit.invalidation_listener import InvalidationListener
from tests.faults.proxy import TcpProxy
from tests.fixtures.services import REDIS_URL, redis_available, require, silent_redis


@asynccontextmanager
async def through_proxy() -> AsyncIterator[tuple[TcpProxy, Any]]:
    """A Redis client whose connections go through a proxy the test cuts and restores (the
    shared Redis stays up for everyone else)."""
    require("Redis", redis_available())
    options = redis_asyncio.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    async with TcpProxy(
        str(options.get("host", "127.0.0.1")), int(options.get("port", 6379))
    ) as proxy:
        client = redis_asyncio.Redis(
            host="127.0.0.1", port=proxy.port, socket_connect_timeout=1, socket_timeout=1
        )
        try:
            yield proxy, client
        finally:
            await client.aclose()


class Recorder:
    """An owner: the messages it was given and how often it was told to forget everything."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.gaps = 0
        self.arrived = asyncio.Event()
        self.gap_seen = asyncio.Event()

    def on_message(self, raw: Any) -> None:
        if raw == b"malformed":
            raise ValueError("not ours")
        self.messages.append(raw)
        self.arrived.set()

    def on_gap(self) -> None:
        self.gaps += 1
        self.gap_seen.set()


@asynccontextmanager
async def listening_on(redis: Any, recorder: Recorder) -> AsyncIterator[InvalidationListener]:
    """A listener on a channel of its own, started (Redis away or not) and always stopped."""
    subscriber = InvalidationListener(
        redis,
        f"aayu-test:invalidate:{uuid.uuid4().hex}",
        name="test_cache",
        on_message=recorder.on_message,
        on_gap=recorder.on_gap,
        retry_seconds=0.1,
    )
    try:
        await asyncio.wait_for(subscriber.start(), 5)
        yield subscriber
    finally:
        await subscriber.stop()
    assert not subscriber.running
    assert not subscriber.subscribed


async def test_subscribed_when_start_returns_and_messages_are_delivered() -> None:
    recorder = Recorder()
    async with through_proxy() as (_, redis), listening_on(redis, recorder) as subscriber:
        assert subscriber.subscribed
        assert subscriber.listening.is_set()
        assert recorder.gaps == 1  # subscribing starts the owner afresh
        await redis.publish(subscriber.channel, b"malformed")  # ignored, it keeps going
        await redis.publish(subscriber.channel, b"first")
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        assert recorder.messages == [b"first"]
        assert recorder.gaps == 1


async def test_a_lost_subscription_empties_and_resubscribes_on_a_fresh_connection() -> None:
    recorder = Recorder()
    async with through_proxy() as (proxy, redis), listening_on(redis, recorder) as subscriber:
        assert subscriber.subscribed
        connections = proxy.accepted
        recorder.gap_seen.clear()

        proxy.cut()  # Redis goes away: a restart, a failover, a network cut
        await asyncio.wait_for(recorder.gap_seen.wait(), 10)
        assert not subscriber.subscribed  # deaf from the moment the owner is told
        await asyncio.sleep(0.3)  # it retries meanwhile, and stays deaf while cut
        assert not subscriber.subscribed

        proxy.restore()
        await asyncio.wait_for(subscriber.listening.wait(), 10)
        assert proxy.accepted > connections  # a new connection, not the dead one
        await redis.publish(subscriber.channel, b"after")
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        assert recorder.messages == [b"after"]


async def test_redis_away_at_start_up_does_not_fail_and_it_subscribes_when_back() -> None:
    recorder = Recorder()
    async with through_proxy() as (proxy, redis):
        proxy.cut()
        async with listening_on(redis, recorder) as subscriber:
            assert subscriber.running
            assert not subscriber.subscribed
            proxy.restore()
            await asyncio.wait_for(subscriber.listening.wait(), 10)
            await redis.publish(subscriber.channel, b"hello")
            await asyncio.wait_for(recorder.arrived.wait(), 5)
            assert recorder.messages == [b"hello"]


@pytest.mark.timeout(30)
async def test_a_silent_redis_at_start_up_does_not_hang_start() -> None:
    recorder = Recorder()
    with silent_redis() as url:
        redis = redis_asyncio.Redis.from_url(url, socket_connect_timeout=0.3, socket_timeout=0.3)
        try:
            async with listening_on(redis, recorder) as subscriber:
                assert subscriber.running
                assert not subscriber.subscribed
                # It keeps trying, and tells its owner each time it fails.
                for _ in range(500):
                    if recorder.gaps >= 2:
                        break
                    await asyncio.sleep(0.02)
                assert recorder.gaps >= 2
                assert not subscriber.subscribed
        finally:
            await redis.aclose()


def _snapshot() -> OrgSnapshot:
    return OrgSnapshot(
        org_id="org-1",
        status="active",
        plan_id="plan",
        features=frozenset(),
        seats=1,
        period_start=None,
        period_end=None,
        past_due_since=None,
        notes_included=0,
        notes_used=0,
        members={},
        seated=frozenset(),
    )


async def test_the_entitlement_cache_keeps_snapshots_only_while_subscribed() -> None:
    snapshot = _snapshot()
    local = EntitlementCache()  # no Redis (one process): kept as always
    local.put(snapshot, loaded_at=local.generation)
    assert local.get("org-1", 60) is snapshot

    async with through_proxy() as (_, redis):
        shared = EntitlementCache(redis=redis, channel=f"aayu-test:{uuid.uuid4().hex}")
        shared.put(snapshot, loaded_at=shared.generation)
        assert shared.deaf
        assert shared.get("org-1", 60) is None  # not subscribed yet: nothing kept
        await shared.start()
        try:
            assert not shared.deaf
            shared.put(snapshot, loaded_at=shared.generation)
            assert shared.get("org-1", 60) is snapshot
        finally:
            await shared.stop()


def test_a_snapshot_an_invalidation_overtook_is_not_kept() -> None:
    # The clinic's billing changed (here or on another instance) while its snapshot was
    # being read: keeping that read would serve the old seats or plan until it expires.
    cache = EntitlementCache()
    snapshot = _snapshot()
    loaded_at = cache.generation
    cache.invalidate("org-1")
    cache.put(snapshot, loaded_at=loaded_at)
    assert cache.get("org-1", 60) is None
    cache.put(snapshot, loaded_at=cache.generation)
    assert cache.get("org-1", 60) is snapshot
