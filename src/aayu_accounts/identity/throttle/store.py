"""Where throttle state lives: Redis when configured (shared by every instance), else memory.

The store knows three things, all with expiry so nothing grows forever:

- *windows*: timestamps of events under a key, counted over a sliding window;
- *blocks*: "refused until T" markers;
- *claims*: single-use markers (a CAPTCHA solution may be used once until it expires).

Timestamps come from ``kit.clock`` and are stored as values, and windows are computed from
them, so tests move the clock instead of sleeping; the Redis TTLs only reclaim memory.

If Redis stops answering, :class:`FallbackStore` carries on in memory and says it is
*degraded*; the throttle then demands a CAPTCHA for every attempt, because in-process counts
see only this instance's share of an attack (stricter, never looser, while blind).
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aayu_accounts.config import Settings
from aayu_accounts.kit import clock
from aayu_accounts.kit.redis_client import create_redis
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)

# Counts are only ever compared with thresholds far below this; capping keeps a flood of
# failures under one key from growing a list without bound.
MAX_EVENTS_PER_KEY = 4096
# Seconds the fallback keeps serving before it asks Redis again.
REDIS_RETRY_SECONDS = 5.0
_SWEEP_EVERY = 512


class ThrottleStore(Protocol):
    @property
    def degraded(self) -> bool:
        """True while the shared store is unreachable and this instance counts alone."""
        ...

    async def hit(self, windows: Sequence[tuple[str, int]], now: float) -> list[int]:
        """Record one event under each ``(key, window_seconds)``; return each new count."""
        ...

    async def read(
        self, windows: Sequence[tuple[str, int]], blocks: Sequence[str], now: float
    ) -> tuple[list[int], list[float | None]]:
        """Counts in each window, and the ``until`` of each block still in force."""
        ...

    async def block(self, key: str, until: float, now: float) -> None: ...

    async def clear(self, keys: Sequence[str]) -> None: ...

    async def claim(self, key: str, until: float, now: float) -> bool:
        """Mark ``key`` used until ``until``; False when it was already marked."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process state for embedded mode (one instance) and as Redis's fallback."""

    def __init__(self) -> None:
        self._events: dict[str, deque[float]] = {}
        self._expiry: dict[str, float] = {}
        self._until: dict[str, float] = {}
        self._operations = 0

    @property
    def degraded(self) -> bool:
        return False

    async def hit(self, windows: Sequence[tuple[str, int]], now: float) -> list[int]:
        self._maybe_sweep(now)
        counts = []
        for key, window in windows:
            events = self._events.setdefault(key, deque(maxlen=MAX_EVENTS_PER_KEY))
            events.append(now)
            self._expiry[key] = max(self._expiry.get(key, 0.0), now + window)
            counts.append(self._count(key, window, now))
        return counts

    async def read(
        self, windows: Sequence[tuple[str, int]], blocks: Sequence[str], now: float
    ) -> tuple[list[int], list[float | None]]:
        counts = [self._count(key, window, now) for key, window in windows]
        untils: list[float | None] = []
        for key in blocks:
            until = self._until.get(key)
            untils.append(until if until is not None and until > now else None)
        return counts, untils

    async def block(self, key: str, until: float, now: float) -> None:
        self._until[key] = max(until, self._until.get(key, 0.0))

    async def clear(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._events.pop(key, None)
            self._expiry.pop(key, None)
            self._until.pop(key, None)

    async def claim(self, key: str, until: float, now: float) -> bool:
        self._maybe_sweep(now)
        current = self._until.get(key)
        if current is not None and current > now:
            return False
        self._until[key] = until
        return True

    async def aclose(self) -> None:
        return None

    def _count(self, key: str, window: int, now: float) -> int:
        events = self._events.get(key)
        if not events:
            return 0
        start = now - window
        while events and events[0] <= start:
            events.popleft()
        return len(events)

    def _maybe_sweep(self, now: float) -> None:
        self._operations += 1
        if self._operations % _SWEEP_EVERY:
            return
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            self._events.pop(key, None)
            del self._expiry[key]
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]


def _ttl(until: float, now: float) -> int:
    # Real seconds for Redis to reclaim the key; a little slack so clock skew never cuts short.
    return max(1, math.ceil(until - now)) + 60


class RedisStore:
    """State shared by every instance: sorted sets of timestamps, and markers with TTLs."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "throttle:"

    @property
    def degraded(self) -> bool:
        return False

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def hit(self, windows: Sequence[tuple[str, int]], now: float) -> list[int]:
        # One MULTI/EXEC: every instance's additions are serialized, so exactly one of them
        # sees a threshold crossed.
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, window in windows:
                name = self._key(key)
                pipe.zadd(name, {f"{now!r}:{secrets.token_hex(6)}": now})
                pipe.zremrangebyscore(name, "-inf", now - window)
                pipe.zcard(name)
                pipe.expire(name, _ttl(now + window, now))
            results = await pipe.execute()
        return [int(results[index * 4 + 2]) for index in range(len(windows))]

    async def read(
        self, windows: Sequence[tuple[str, int]], blocks: Sequence[str], now: float
    ) -> tuple[list[int], list[float | None]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, window in windows:
                pipe.zcount(self._key(key), f"({now - window!r}", "+inf")
            for key in blocks:
                pipe.get(self._key(key))
            results = await pipe.execute()
        counts = [int(value) for value in results[: len(windows)]]
        untils: list[float | None] = []
        for raw in results[len(windows) :]:
            until = float(raw) if raw is not None else None
            untils.append(until if until is not None and until > now else None)
        return counts, untils

    async def block(self, key: str, until: float, now: float) -> None:
        await self._redis.set(self._key(key), repr(until), ex=_ttl(until, now))

    async def clear(self, keys: Sequence[str]) -> None:
        if keys:
            await self._redis.delete(*(self._key(key) for key in keys))

    async def claim(self, key: str, until: float, now: float) -> bool:
        created = await self._redis.set(self._key(key), repr(until), ex=_ttl(until, now), nx=True)
        return bool(created)

    async def aclose(self) -> None:
        await self._redis.aclose()


class FallbackStore:
    """Redis first; on any Redis failure, memory, flagged as degraded and logged as an alert."""

    def __init__(
        self,
        primary: RedisStore,
        fallback: MemoryStore | None = None,
        *,
        retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        self._primary = primary
        self._fallback = fallback or MemoryStore()
        self._retry_seconds = retry_seconds
        self._retry_at: float | None = None

    @property
    def degraded(self) -> bool:
        return self._retry_at is not None

    def _use_primary(self) -> bool:
        return self._retry_at is None or clock.monotonic() >= self._retry_at

    def _failed(self, error: Exception) -> None:
        metrics.REDIS_FALLBACKS.labels("throttle").inc()
        if self._retry_at is None:
            # The alerting pipeline keys on this event name; the error text has no secrets.
            log.error(
                "throttle_store_degraded",
                alert=True,
                error_type=type(error).__name__,
                detail="Redis unreachable: sign-in throttling counts in-process, CAPTCHA always",
            )
        self._retry_at = clock.monotonic() + self._retry_seconds

    def _recovered(self) -> None:
        if self._retry_at is not None:
            log.warning("throttle_store_recovered")
            self._retry_at = None

    async def hit(self, windows: Sequence[tuple[str, int]], now: float) -> list[int]:
        # Memory always counts too, so a failure half-way through an attack loses nothing
        # this instance has seen.
        local = await self._fallback.hit(windows, now)
        if self._use_primary():
            try:
                shared = await self._primary.hit(windows, now)
            except (RedisError, OSError) as error:
                self._failed(error)
            else:
                self._recovered()
                return [max(a, b) for a, b in zip(shared, local, strict=True)]
        return local

    async def read(
        self, windows: Sequence[tuple[str, int]], blocks: Sequence[str], now: float
    ) -> tuple[list[int], list[float | None]]:
        local_counts, local_untils = await self._fallback.read(windows, blocks, now)
        if self._use_primary():
            try:
                counts, untils = await self._primary.read(windows, blocks, now)
            except (RedisError, OSError) as error:
                self._failed(error)
            else:
                self._recovered()
                return (
                    [max(a, b) for a, b in zip(counts, local_counts, strict=True)],
                    [_later(a, b) for a, b in zip(untils, local_untils, strict=True)],
                )
        return local_counts, local_untils

    async def block(self, key: str, until: float, now: float) -> None:
        await self._fallback.block(key, until, now)
        if self._use_primary():
            try:
                await self._primary.block(key, until, now)
            except (RedisError, OSError) as error:
                self._failed(error)

    async def clear(self, keys: Sequence[str]) -> None:
        await self._fallback.clear(keys)
        if self._use_primary():
            try:
                await self._primary.clear(keys)
            except (RedisError, OSError) as error:
                self._failed(error)

    async def claim(self, key: str, until: float, now: float) -> bool:
        fresh_locally = await self._fallback.claim(key, until, now)
        if self._use_primary():
            try:
                return await self._primary.claim(key, until, now) and fresh_locally
            except (RedisError, OSError) as error:
                self._failed(error)
        return fresh_locally

    async def aclose(self) -> None:
        await self._primary.aclose()


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def build_throttle_store(settings: Settings, redis: Redis | None = None) -> ThrottleStore:
    """Redis-backed (with in-process fallback) when ``redis_url`` is set, else in-process."""
    if redis is None and settings.redis_url:
        # Short timeouts: a sign-in waiting on a sick Redis is worse than one counted locally.
        redis = create_redis(settings)
    if redis is None:
        return MemoryStore()
    return FallbackStore(
        RedisStore(redis, settings.redis_prefix),
        retry_seconds=settings.redis_breaker_reset_seconds,
    )
