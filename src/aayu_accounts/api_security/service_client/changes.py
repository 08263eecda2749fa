"""Telling every instance at once that a service client's credentials changed.

The signature verifier caches each key id's credentials (``request_signing/directory.py``).
A rotation or a disable marks the key id on the database session doing it; the key id is
dropped from this process's directories at once and again after the commit (so a lookup racing
the transaction cannot keep the old state), and the commit publishes it on Redis
(``{prefix}api-security:client-invalidate``), which every instance's directory listens to —
the session cache's mechanism (``identity/auth_session/cache.py``). A process without a
directory of its own (the ``clients`` CLI) publishes through a short-lived connection; the CLI
waits for it with :func:`drain` before it exits. Without Redis (embedded mode: one process)
the in-process drop is all there is. A message lost while a listener reconnects is bounded by
the directory's lifetime (``AAYU_CLIENT_CACHE_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any, Protocol

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aayu_accounts.config import get_settings
from aayu_accounts.kit.redis_client import create_redis

log = structlog.get_logger(__name__)

CHANNEL_SUFFIX = "api-security:client-invalidate"
_PENDING_KEY = "aayu_service_client_changes"


class Listener(Protocol):
    """A credentials cache (``ClientDirectory``): drops key ids, may publish through Redis."""

    def forget(self, key_id: str | None = None) -> None: ...

    def publisher(self) -> tuple[Any, str] | None:
        """(its Redis client, channel) while it listens."""
        ...


_listeners: weakref.WeakSet[Any] = weakref.WeakSet()
_publishes: set[asyncio.Task[None]] = set()


def register(listener: Listener) -> None:
    _listeners.add(listener)


def message(key_ids: set[str]) -> str:
    return json.dumps({"key_ids": sorted(key_ids)})


def key_ids_of(raw: str | bytes) -> set[str] | None:
    """The key ids a message names; None for "everything" (or a message not understood)."""
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("all"):
        return None
    return {str(key_id) for key_id in data.get("key_ids", [])}


def _forget_here(key_ids: set[str]) -> None:
    for listener in list(_listeners):
        for key_id in key_ids:
            listener.forget(key_id)


def mark(session: AsyncSession, key_id: str) -> None:
    """``key_id``'s credentials change in ``session``: dropped here now, and everywhere once
    the session commits."""
    _forget_here({key_id})
    pending: set[str] = session.sync_session.info.setdefault(_PENDING_KEY, set())
    pending.add(key_id)


def committed(key_ids: set[str]) -> None:
    _forget_here(key_ids)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(_publish(key_ids))
    _publishes.add(task)
    task.add_done_callback(_publishes.discard)


async def _publish(key_ids: set[str]) -> None:
    text = message(key_ids)
    try:
        # Each running directory's channel once (tests run several apps in one process).
        targets: dict[str, Any] = {}
        for listener in list(_listeners):
            target = listener.publisher()
            if target is not None:
                targets.setdefault(target[1], target[0])
        for channel, redis in targets.items():
            await redis.publish(channel, text)
        if targets:
            return
        settings = get_settings()
        client = create_redis(settings)
        if client is None:
            return
        async with client:
            await client.publish(f"{settings.redis_prefix}{CHANNEL_SUFFIX}", text)
    except Exception as exc:
        # Other instances fall back on the cache lifetime; the change itself is committed.
        log.warning("service_client.publish_failed", error=type(exc).__name__)


async def drain() -> None:
    """Wait for the publications in flight (the CLI before it exits, tests)."""
    if _publishes:
        await asyncio.gather(*_publishes, return_exceptions=True)


@event.listens_for(Session, "after_commit")
def _on_commit(sync_session: Session) -> None:
    pending = sync_session.info.pop(_PENDING_KEY, None)
    if pending:
        committed(set(pending))
