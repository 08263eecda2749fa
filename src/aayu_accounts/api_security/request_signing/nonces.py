"""Nonces remembered per key for the signature window, so a captured request cannot be replayed.

With Redis (``SET key 1 NX EX ttl``) every instance shares the memory: a replay sent to another
instance is caught too. Without Redis (embedded mode, one process) a bounded in-process map
does the same job. Should Redis fail, this instance falls back to its own memory (a replay to
the same instance is still caught) and tries Redis again after a pause.

Under load many signed requests reach the nonce check in the same event-loop turn; their
``SET NX`` commands go to Redis as one pipeline (not a transaction: each answers on its own,
in order, so of two requests with the same nonce in one batch only the first is new). One round
trip per turn instead of one per request, as the rate limiter batches its hits.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any, Protocol

import structlog

from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)


class NonceStore(Protocol):
    async def first_use(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        """True the first time (key_id, nonce) is seen within ``ttl_seconds``."""
        ...

    async def aclose(self) -> None: ...


class MemoryNonceStore:
    """Nonces in a dict with an expiry heap; at most ``max_entries`` (oldest dropped first).

    Dropping the oldest early is safe only while they are outside the window; the bound is
    sized far above 100 requests/s x 600 s per client so that does not happen in practice.

    Each (key id, nonce) is kept as its 64-bit hash, not as the two strings: a signed request's
    nonce is held for the whole window (600 s), so at a few hundred signed requests a second
    this map is the largest thing in the process, and the strings were two thirds of it.
    ``hash`` is keyed per process (``PYTHONHASHSEED``), so nobody can aim for a collision; a
    chance collision (about n^2 / 2^65) could only refuse a request as a replay, never let one
    through.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._expires: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    def _purge(self, now: float) -> None:
        while self._heap and (self._heap[0][0] <= now or len(self._heap) > self.max_entries):
            expires, key = heapq.heappop(self._heap)
            if self._expires.get(key) == expires:
                del self._expires[key]

    async def first_use(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        now = clock.monotonic()
        self._purge(now)
        key = hash((key_id, nonce))
        expires = self._expires.get(key)
        if expires is not None and expires > now:
            return False
        until = now + ttl_seconds
        self._expires[key] = until
        heapq.heappush(self._heap, (until, key))
        return True

    def __len__(self) -> int:
        return len(self._expires)

    async def aclose(self) -> None:
        self._expires.clear()
        self._heap.clear()


class RedisNonceStore:
    """Shared nonce memory in Redis, with the in-process store behind it during an outage."""

    def __init__(
        self, redis: Any, prefix: str, *, retry_seconds: float = 5.0, fallback: MemoryNonceStore
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self.fallback = fallback
        self._down_until = 0.0
        # (Redis key, lifetime, the waiting request's answer) of this event-loop turn.
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        # Round trips made (one per batch): lets tests and benchmarks see the batching.
        self.round_trips = 0

    async def first_use(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        # Remembered locally as well: a replay to this instance is caught even if Redis
        # fails between the two requests.
        local = await self.fallback.first_use(key_id, nonce, ttl_seconds)
        if clock.monotonic() < self._down_until:
            return local
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._pending.append((f"{self.prefix}nonce:{key_id}:{nonce}", ttl_seconds, answer))
        if len(self._pending) == 1:
            # After the other requests that are ready in this turn have queued theirs.
            loop.call_soon(self._start_flush)
        try:
            created = await answer
        except Exception as exc:
            self._redis_failed(exc)
            return local
        return created and local

    def _redis_failed(self, exc: BaseException) -> None:
        if clock.monotonic() >= self._down_until:
            metrics.REDIS_FALLBACKS.labels("nonces").inc()
            log.warning("nonces.redis_unavailable", error=type(exc).__name__)
        self._down_until = clock.monotonic() + self.retry_seconds

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[str, int, asyncio.Future[bool]]]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, ttl_seconds, _ in batch:
                pipe.set(key, b"1", nx=True, ex=ttl_seconds)
            self.round_trips += 1
            results: list[Any] = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(bool(result))

    async def aclose(self) -> None:
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.fallback.aclose()
