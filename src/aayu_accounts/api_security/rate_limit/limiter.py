"""One limiter for the API: per user, per IP, per service client.

Sliding-window counters from ``limits`` over Redis (shared by every instance) or in-process
memory (embedded mode). When Redis fails the limiter does not open the gates: each instance
enforces ``1/fallback_divisor`` of the limit on its own memory (stricter, never looser, while
several instances share the traffic) and tries Redis again after ``retry_seconds``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

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
        if redis is not None:
            storage: Storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{key_prefix}limits",
                wrap_exceptions=True,
                connection_pool=redis.connection_pool,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
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
                return await self._hit(self._shared, item, identifiers)
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
    ) -> Decision:
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
