"""The invalidation channel every per-process cache listens on (kit/invalidation_listener.py):
subscribed before start() returns, told to forget everything whenever messages may have been
missed, and never stopping the instance when Redis is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as redis_asyncio

from aayu_accounts.kit.invalidation_listener import InvalidationListener
from tests.client.server import free_port
from tests.fixtures.services import REDIS_URL, redis_available, require


@pytest_asyncio.fixture(loop_scope="session")
async def redis() -> AsyncIterator[Any]:
    require("Redis", redis_available())
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


class Recorder:
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


def listener(redis: Any, channel: str, recorder: Recorder) -> InvalidationListener:
    return InvalidationListener(
        redis,
        channel,
        name="test-cache",
        on_message=recorder.on_message,
        on_gap=recorder.on_gap,
        retry_seconds=0.1,
    )


async def test_nothing_published_after_start_is_missed(redis: Any) -> None:
    channel = f"aayu-test:invalidate:{uuid.uuid4().hex}"
    recorder = Recorder()
    subscriber = listener(redis, channel, recorder)
    await subscriber.start()
    try:
        assert subscriber.listening.is_set()
        await redis.publish(channel, b"malformed")  # ignored, the listener keeps going
        await redis.publish(channel, b"first")
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        assert recorder.messages == [b"first"]
        assert recorder.gaps == 0
    finally:
        await subscriber.stop()
    assert not subscriber.running


async def test_a_lost_subscription_empties_the_cache_and_listening_resumes(redis: Any) -> None:
    channel = f"aayu-test:invalidate:{uuid.uuid4().hex}"
    name = f"aayu-test-{uuid.uuid4().hex[:12]}"
    # The subscriber's own client, named, so only its connection is cut below (Redis is
    # shared with whatever else runs on this machine).
    own = redis_asyncio.Redis.from_url(REDIS_URL, client_name=name)
    recorder = Recorder()
    subscriber = listener(own, channel, recorder)
    await subscriber.start()
    try:
        # Redis drops the subscriber's connection (a restart, a failover, a network cut).
        clients = await redis.client_list()
        ids = [client["id"] for client in clients if client.get("name") == name]
        assert ids
        for client_id in ids:
            await redis.execute_command("CLIENT", "KILL", "ID", client_id)
        await asyncio.wait_for(recorder.gap_seen.wait(), 10)
        await asyncio.wait_for(subscriber.listening.wait(), 10)
        await redis.publish(channel, b"after")
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        assert recorder.messages == [b"after"]
    finally:
        await subscriber.stop()
        await own.aclose()


async def test_redis_away_at_start_up_does_not_stop_the_instance() -> None:
    dead = redis_asyncio.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    recorder = Recorder()
    subscriber = listener(dead, "aayu-test:invalidate:nobody", recorder)
    try:
        await subscriber.start()
        assert subscriber.running
        assert not subscriber.listening.is_set()
        # It keeps trying, and forgets everything each time it fails.
        await asyncio.wait_for(recorder.gap_seen.wait(), 5)
    finally:
        await subscriber.stop()
        await dead.aclose()
