"""A Redis pub/sub channel of invalidations, listened to for as long as an instance runs.

Three per-process caches must be emptied by other instances' changes: session lookups
(``identity/auth_session/cache.py``), entitlement snapshots (``billing/entitlement/cache.py``)
and service-client credentials (``api_security/request_signing/directory.py``). Each publishes
what changed after its commit and listens here for the others'.

Pub/sub does not replay: whatever is published while a subscriber is disconnected is lost to
it. So every time the subscription is lost or made again, the owner is told to forget
everything (``on_gap``) and reloads from the database; a cache is never left holding what
another instance changed. Redis being down at start-up does not stop the instance: the
listener keeps trying, once a second, and each owner's lifetime bound still holds meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class InvalidationListener:
    def __init__(
        self,
        redis: Any,
        channel: str,
        *,
        name: str,
        on_message: Callable[[Any], None],
        on_gap: Callable[[], None],
        retry_seconds: float = 1.0,
    ) -> None:
        self._redis = redis
        self.channel = channel
        self.name = name
        self._on_message = on_message
        self._on_gap = on_gap
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        # Set while subscribed (tests wait for it).
        self.listening = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Subscribe now, so nothing published after this returns is missed, then listen."""
        if self._task is not None:
            return
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            self.listening.set()
        except Exception as exc:
            log.warning(
                "invalidation.subscription_failed", cache=self.name, error=type(exc).__name__
            )
        self._task = asyncio.create_task(self._listen(pubsub), name=f"aayu-{self.name}")

    def start_soon(self) -> None:
        """:meth:`start` for code without an await: the subscription is made by the task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(self._redis.pubsub()), name=f"aayu-{self.name}"
            )

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self.channel)
                        # Whatever was published while not subscribed was missed.
                        self._on_gap()
                        self.listening.set()
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                except Exception as exc:
                    log.warning(
                        "invalidation.subscription_failed",
                        cache=self.name,
                        error=type(exc).__name__,
                    )
                    self.listening.clear()
                    self._on_gap()
                    with contextlib.suppress(Exception):
                        await pubsub.reset()
                    pubsub = self._redis.pubsub()
                    await asyncio.sleep(self._retry_seconds)
                    continue
                if message and message.get("type") == "message":
                    # A malformed message changes nothing (another instance's bug or a stray
                    # publisher); the lifetime bound still holds.
                    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                        self._on_message(message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _log_failure(self, exc: Exception) -> None:
        log.warning("invalidation.subscription_failed", cache=self.name, error=type(exc).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening.clear()
