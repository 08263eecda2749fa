"""One limiter for the API: per user, per IP, per service client.

Sliding-window counters from ``limits`` over Redis (shared by every instance) or in-process
memory (embedded mode). When Redis fails the limiter does not open the gates: each instance
enforces ``1/fallback_divisor`` of the limit on its own memory (stricter, never looser, while
several instances share the traffic) and tries Redis again after ``retry_seconds``.

Every request pays for its limit, so the Redis path is kept to a fraction of a round trip: the
hits of one event-loop turn (the requests that arrived together) go to Redis in one pipeline of
the same atomic script ``limits`` runs, each still counted and decided on its own. Nothing is
decided locally and nothing is counted late: batching changes the cost, not the answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import NoScriptError

from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until a request would be allowed again (0 when allowed now).
    reset_after: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


_Pending = tuple[RateLimitItem, tuple[str, ...], "asyncio.Future[bool]"]


class _RedisBatcher:
    """The sliding-window hits of one event-loop turn, sent to Redis as one pipeline.

    Each hit runs ``limits``' own acquire script on ``limits``' own keys, so instances with and
    without batching (and ``get_window_stats``) agree on every counter.
    """

    def __init__(self, redis: Any, storage: RedisStorage) -> None:
        self._redis = redis
        self._storage = storage
        bridge: Any = storage.bridge
        self._script = bridge.lua_acquire_sliding_window
        self._pending: list[_Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()

    def _keys(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[str, str]:
        key = item.key_for(*identifiers)
        bridge = self._storage.bridge
        current = self._storage._current_window_key(key)  # limits' own key layout
        previous = self._storage._previous_window_key(key)
        return bridge.prefixed_key(previous), bridge.prefixed_key(current)

    async def hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((item, identifiers, future))
        if len(self._pending) == 1:
            # After the other requests that are ready in this turn have queued their hits.
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            results = await self._send(batch)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(bool(result))

    async def _send(self, batch: list[_Pending]) -> list[Any]:
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for item, identifiers, _ in batch:
                previous, current = self._keys(item, identifiers)
                pipe.evalsha(
                    self._script.sha, 2, previous, current, item.amount, item.get_expiry(), 1
                )
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                # A restarted Redis forgot the script; no hit was counted by a refused call.
                self._script.sha = await self._redis.script_load(self._script.script)
                results = [r for r in results if not isinstance(r, NoScriptError)]
                if not results:
                    continue
                # Some hits ran, some did not: never count any request twice.
                raise NoScriptError("script missing for part of a batch")
            return results
        raise NoScriptError("script missing")


class Limiter:
    def __init__(
        self,
        *,
        redis: Any = None,
        key_prefix: str = "aayu:",
        fallback_divisor: int = 4,
        retry_seconds: float = 5.0,
    ) -> None:
        self.fallback_divisor = fallback_divisor
        self.retry_seconds = retry_seconds
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._batcher: _RedisBatcher | None = None
        if redis is not None:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{key_prefix}limits",
                wrap_exceptions=True,
                connection_pool=redis.connection_pool,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
            self._batcher = _RedisBatcher(redis, storage)
        self._down_until = 0.0

    @property
    def uses_redis(self) -> bool:
        return self._shared is not None

    def _fallback_item(self, item: RateLimitItem) -> RateLimitItem:
        amount = max(1, item.amount // self.fallback_divisor)
        return type(item)(amount, item.multiples, item.namespace)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against ``item`` for ``identifiers`` and say whether it may pass."""
        if self._shared is not None and clock.monotonic() >= self._down_until:
            try:
                return await self._hit(self._shared, item, identifiers, self._batcher)
            except Exception as exc:
                self._down_until = clock.monotonic() + self.retry_seconds
                metrics.REDIS_FALLBACKS.labels("rate_limit").inc()
                log.warning("rate_limit.redis_unavailable", error=type(exc).__name__)
            return await self._hit(self._memory, self._fallback_item(item), identifiers)
        if self._shared is not None:
            return await self._hit(self._memory, self._fallback_item(item), identifiers)
        return await self._hit(self._memory, item, identifiers)

    @staticmethod
    async def _hit(
        strategy: SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        identifiers: tuple[str, ...],
        batcher: _RedisBatcher | None = None,
    ) -> Decision:
        if batcher is not None:
            allowed = await batcher.hit(item, identifiers)
        else:
            allowed = await strategy.hit(item, *identifiers)
        if allowed:
            # Only the refusal needs exact numbers; skipping the second round trip keeps the
            # common path to one Redis call.
            return Decision(True, item.amount, -1, 0)
        stats = await strategy.get_window_stats(item, *identifiers)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(False, item.amount, stats.remaining, reset_after)


def per_second(amount: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount)


def parse_limit(text: str) -> RateLimitItem:
    return parse(text)
