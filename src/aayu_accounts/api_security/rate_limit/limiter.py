"""One limiter for the API: per user, per IP, per service client.

Sliding-window counters from ``limits`` over Redis (shared by every instance) or in-process
memory (embedded mode). When Redis fails the limiter does not open the gates: each instance
enforces ``1/fallback_divisor`` of the limit on its own memory (stricter, never looser, while
several instances share the traffic) and tries Redis again after ``retry_seconds``.

Every request pays for its limit, so the Redis path is kept to a fraction of a round trip: the
hits of one event-loop turn (the requests that arrived together) go to Redis in one pipeline of
the same atomic script ``limits`` runs, each still counted and decided on its own.

A busy key does not go to Redis for every request: the instance takes a *lease*, ``n`` hits
counted in the shared counter at once by the same script, and allows the next ``n - 1``
requests for that key from it. Nothing is allowed that was not counted in Redis first, so the
shared limit is never looser; hits leased but not used before the lease lapses (within
``lease_seconds``, at most a sixtieth of the window) stay counted, which can make it stricter
by at most one lease per key and instance each time a lease lapses. Leases start at one hit,
double while requests arrive faster than leases last (up to ``lease_max`` or a tenth of the
limit, whichever is smaller), fall back to what was used when one lapses unused, and to
exactly one hit per request near the limit (a refused lease is retried as a single hit). A
key called slowly never holds more than the one hit its request uses: exact, as without
leases.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
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


# A hit's cost: a number of hits, or a callable asked when the batch is sent (a lease sized
# by the requests that queued for it meanwhile).
_Cost = int | Callable[[], int]
# What Redis said: (the hits asked for, whether they were counted).
_Answer = tuple[int, bool]
_Pending = tuple[RateLimitItem, tuple[str, ...], _Cost, "asyncio.Future[_Answer]"]


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

    async def hit(
        self, item: RateLimitItem, identifiers: tuple[str, ...], cost: _Cost = 1
    ) -> _Answer:
        """Count ``cost`` hits at once, all or none: (hits asked for, counted or not)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Answer] = loop.create_future()
        self._pending.append((item, identifiers, cost, future))
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
        costs = [cost() if callable(cost) else cost for _, _, cost, _ in batch]
        try:
            results = await self._send(batch, costs)
        except BaseException as exc:
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, _, future), cost, result in zip(batch, costs, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result((cost, bool(result)))

    async def _send(self, batch: list[_Pending], costs: list[int]) -> list[Any]:
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for (item, identifiers, _, _), cost in zip(batch, costs, strict=True):
                previous, current = self._keys(item, identifiers)
                pipe.evalsha(
                    self._script.sha, 2, previous, current, item.amount, item.get_expiry(), cost
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


# A fetch's outcome for the requests waiting on it: hits granted, refused, or given up.
_REFUSED = 0
_ABANDONED = -1


class _Lease:
    """One key's lease: hits counted in Redis that this instance may still allow."""

    __slots__ = (
        "exact_until",
        "expires",
        "fetching",
        "granted",
        "reserved",
        "size",
        "tokens",
        "waiting",
    )

    def __init__(self) -> None:
        self.size = 1  # the next lease's size, adapted to how fast the key is used
        self.granted = 0  # the current lease's size
        self.tokens = 0  # its hits not allowed yet
        self.expires = 0.0  # when they lapse (monotonic)
        self.exact_until = 0.0  # after a refusal: single hits, no leases, until then
        self.fetching: asyncio.Future[int] | None = None
        self.waiting = 0  # requests waiting for the fetch in flight
        # Hits the last fetch counted for the requests that were waiting when it was sent:
        # theirs, whatever the lease's lifetime (a slow round trip must not void them).
        self.reserved = 0

    def idle(self, now: float) -> bool:
        return self.fetching is None and self.expires <= now and self.exact_until <= now


class _Leases:
    """Per-key leases of the shared counter, taken through the batcher (see the module doc)."""

    def __init__(
        self, batcher: _RedisBatcher, *, seconds: float, max_size: int, max_keys: int
    ) -> None:
        self._batcher = batcher
        self.seconds = seconds
        self.max_size = max_size
        self.max_keys = max_keys
        # Keyed by the item and identifiers themselves: limits' ``key_for`` string costs more
        # than the rest of a leased hit, and is only needed for the Redis call.
        self._table: dict[tuple[RateLimitItem, tuple[str, ...]], _Lease] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._table)

    def lifetime(self, item: RateLimitItem) -> float:
        # Hits counted ahead of their use stay within a sixtieth of the window.
        return min(self.seconds, item.get_expiry() / 60)

    def cap(self, item: RateLimitItem) -> int:
        return max(1, min(self.max_size, item.amount // 10))

    async def hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> bool:
        cap = self.cap(item)
        if cap == 1 or self.seconds <= 0:
            return (await self._batcher.hit(item, identifiers))[1]
        key = (item, identifiers)
        woken = False
        while True:
            now = clock.monotonic()
            if now >= self._next_sweep:
                self._sweep(now)
            lease = self._table.get(key)
            if lease is None:
                if len(self._table) >= self.max_keys:
                    self._sweep(now)
                if len(self._table) >= self.max_keys:
                    # Every slot holds a live lease: this key pays one exact hit instead.
                    return (await self._batcher.hit(item, identifiers))[1]
                lease = self._table[key] = _Lease()
            if lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                return True
            if now < lease.exact_until:
                # Near the limit: single hits, each decided by Redis (batched, not queued).
                allowed = (await self._batcher.hit(item, identifiers))[1]
                if not allowed:
                    lease.exact_until = max(lease.exact_until, now + self.lifetime(item))
                return allowed
            if lease.fetching is None:
                return await self._fetch(lease, item, identifiers, cap, now, woken=woken)
            lease.waiting += 1
            try:
                granted = await asyncio.shield(lease.fetching)
            finally:
                lease.waiting -= 1
            if granted == _REFUSED:
                # The same counter refused a single hit just now: so would it this one.
                return False
            if lease.reserved > 0:
                lease.reserved -= 1
                return True
            woken = True

    async def _fetch(
        self,
        lease: _Lease,
        item: RateLimitItem,
        identifiers: tuple[str, ...],
        cap: int,
        now: float,
        *,
        woken: bool,
    ) -> bool:
        if now < lease.expires:
            if not woken:
                # Used up before it lapsed: requests come faster than this lease lasts.
                lease.size = min(cap, lease.size * 2)
        elif lease.tokens > 0:
            # Lapsed with hits unused: next time only what this one served.
            lease.size = max(1, lease.granted - lease.tokens)
        lease.tokens = 0
        lease.reserved = 0  # left by waiters that gave up: dropped (stricter, never looser)
        counted_waiters = 0

        def cost() -> int:
            # Asked when the batch is sent, so requests that queued meanwhile are included.
            # They are real requests, so all of them are counted (one round trip for a whole
            # queue, as when each request sent its own hit); only the hits counted ahead of
            # any request are capped.
            nonlocal counted_waiters
            counted_waiters = lease.waiting
            return max(1 + counted_waiters, min(cap, lease.size))

        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        lease.fetching = future
        try:
            asked, allowed = await self._batcher.hit(item, identifiers, cost)
            if not allowed and asked > 1:
                # Near the limit: the last hits are counted one by one, exactly.
                lease.exact_until = now + self.lifetime(item)
                counted_waiters = 0
                asked, allowed = await self._batcher.hit(item, identifiers, 1)
        except Exception as exc:
            lease.size, lease.granted, lease.expires = 1, 0, 0.0
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, raise it themselves
            raise
        except BaseException:
            future.set_result(_ABANDONED)  # cancelled: the waiters try again themselves
            raise
        finally:
            lease.fetching = None
        if not allowed:
            lease.size, lease.granted, lease.expires = 1, 0, 0.0
            lease.exact_until = now + self.lifetime(item)
            future.set_result(_REFUSED)
            return False
        # The waiters' hits are theirs; the rest lapse counted from before the hits were
        # counted, never later.
        lease.reserved = counted_waiters
        lease.granted = asked - counted_waiters
        lease.size = min(cap, max(lease.size, lease.granted))
        lease.tokens = lease.granted - 1
        lease.expires = now + self.lifetime(item)
        future.set_result(asked)
        return True

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 1.0
        for key in [key for key, lease in self._table.items() if lease.idle(now)]:
            del self._table[key]


class Limiter:
    def __init__(
        self,
        *,
        redis: Any = None,
        key_prefix: str = "aayu:",
        fallback_divisor: int = 4,
        retry_seconds: float = 5.0,
        lease_seconds: float = 1.0,
        lease_max: int = 32,
        lease_keys: int = 10_000,
    ) -> None:
        self.fallback_divisor = fallback_divisor
        self.retry_seconds = retry_seconds
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._leases: _Leases | None = None
        if redis is not None:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{key_prefix}limits",
                wrap_exceptions=True,
                connection_pool=redis.connection_pool,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
            self._leases = _Leases(
                _RedisBatcher(redis, storage),
                seconds=lease_seconds,
                max_size=lease_max,
                max_keys=lease_keys,
            )
        self._down_until = 0.0

    @property
    def uses_redis(self) -> bool:
        return self._shared is not None

    @property
    def leased_keys(self) -> int:
        """Keys with lease state held in this process (bounded by ``lease_keys``)."""
        return len(self._leases) if self._leases is not None else 0

    def _fallback_item(self, item: RateLimitItem) -> RateLimitItem:
        amount = max(1, item.amount // self.fallback_divisor)
        return type(item)(amount, item.multiples, item.namespace)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against ``item`` for ``identifiers`` and say whether it may pass."""
        if self._shared is not None and self._leases is not None:
            if clock.monotonic() >= self._down_until:
                try:
                    allowed = await self._leases.hit(item, identifiers)
                    return await self._decide(self._shared, item, identifiers, allowed)
                except Exception as exc:
                    self._down_until = clock.monotonic() + self.retry_seconds
                    metrics.REDIS_FALLBACKS.labels("rate_limit").inc()
                    log.warning("rate_limit.redis_unavailable", error=type(exc).__name__)
            return await self._hit(self._memory, self._fallback_item(item), identifiers)
        return await self._hit(self._memory, item, identifiers)

    @classmethod
    async def _hit(
        cls,
        strategy: SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        identifiers: tuple[str, ...],
    ) -> Decision:
        allowed = await strategy.hit(item, *identifiers)
        return await cls._decide(strategy, item, identifiers, allowed)

    @staticmethod
    async def _decide(
        strategy: SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        identifiers: tuple[str, ...],
        allowed: bool,
    ) -> Decision:
        if allowed:
            # Only the refusal needs exact numbers; skipping the second round trip keeps the
            # common path to one Redis call at most.
            return _allowed(item.amount)
        stats = await strategy.get_window_stats(item, *identifiers)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(False, item.amount, stats.remaining, reset_after)


@lru_cache(maxsize=128)
def _allowed(limit: int) -> Decision:
    # Decisions are immutable: an allowed one per limit serves every request.
    return Decision(True, limit, -1, 0)


def per_second(amount: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount)


def parse_limit(text: str) -> RateLimitItem:
    return parse(text)
