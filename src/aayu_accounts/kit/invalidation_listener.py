"""A Redis pub/sub channel of invalidations, listened to for as long as an instance runs.

Three per-process caches must be emptied by other instances' changes: session lookups
(``identity/auth_session/cache.py``), entitlement snapshots (``billing/entitlement/cache.py``)
and service-client credentials (``api_security/request_signing/directory.py``). Each publishes
what changed after its commit and listens here for the others'.

Pub/sub does not replay: whatever is published while a subscriber is not subscribed is lost
to it. So the listener owns "subscribed or not" (:attr:`InvalidationListener.subscribed`, and
the :attr:`~InvalidationListener.listening` event) and each owner caches only while it is
subscribed: every time the subscription is made or lost the owner is told to forget
everything (``on_gap``), and a cache that cannot hear the others serves from the database. A
lost subscription is made again on a fresh connection, once every ``retry_seconds``. Redis
being away at start-up does not stop the instance: the listener keeps trying.
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
        """``name`` prefixes the log event (``{name}.subscription_failed``); ``on_message``
        gets each message's data (raising ``ValueError``, ``TypeError``, ``AttributeError``
        or ``KeyError`` on a malformed one ignores it); ``on_gap`` must empty the cache."""
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
    def subscribed(self) -> bool:
        return self.listening.is_set()

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Subscribe now (so the owner caches from the first request on), then keep
        listening. Redis away does not fail this: the listener keeps trying."""
        if self._task is not None:
            return
        pubsub = self._redis.pubsub()
        try:
            await self._subscribe(pubsub)
        except Exception as exc:
            pubsub = await self._lost(pubsub, exc)
        if self._task is None:  # not started meanwhile by a concurrent caller
            self._task = asyncio.create_task(self._listen(pubsub), name=f"aayu-{self.name}")

    def start_soon(self) -> None:
        """:meth:`start` for code that cannot await (needs a running loop): the task makes
        the subscription."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(self._redis.pubsub()), name=f"aayu-{self.name}"
            )

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.subscribe(self.channel)
        # Whatever was published while not subscribed was missed: the owner starts afresh,
        # before it may cache again.
        self._on_gap()
        self.listening.set()

    async def _lost(self, pubsub: Any, exc: Exception) -> Any:
        """Deaf from now on: the owner forgets everything; returns a fresh pub/sub (the old
        connection may be half-open)."""
        log.warning(f"{self.name}.subscription_failed", error=type(exc).__name__)
        self.listening.clear()
        self._on_gap()
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        return self._redis.pubsub()

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                try:
                    if not pubsub.subscribed:
                        await self._subscribe(pubsub)
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                except Exception as exc:
                    pubsub = await self._lost(pubsub, exc)
                    await asyncio.sleep(self._retry_seconds)
                    continue
                if message and message.get("type") == "message":
                    # A malformed message changes nothing (another instance's bug or a stray
                    # publisher); the owner's lifetime bound still holds.
                    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                        self._on_message(message["data"])
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening.clear()


def listener_for(
    redis: Any,
    channel: str | None,
    name: str,
    on_message: Callable[[Any], None],
    on_gap: Callable[[], None],
) -> InvalidationListener | None:
    """A cache's listener when Redis is configured; None without (one process: nothing to
    hear, and the cache keeps entries as always)."""
    if redis is None or channel is None:
        return None
    return InvalidationListener(redis, channel, name=name, on_message=on_message, on_gap=on_gap)
