"""Telling every instance that the flag configuration changed, and hearing about it.

Publishing happens when the change commits, never before (DESIGN rule 3):

* on PostgreSQL the service issues ``pg_notify`` inside its transaction; PostgreSQL itself
  delivers it at commit and drops it on rollback;
* where Redis is configured, an after-commit hook publishes the new version on the Redis
  channel (instances listen there rather than on PostgreSQL when Redis is configured).

Both lose messages to a listener that is disconnected at that moment, which is why every
instance also polls the version (see ``runtime.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aayu_accounts.config import Settings
from aayu_accounts.kit.redis_client import create_redis

log = structlog.get_logger(__name__)

PG_CHANNEL = "aayu_flags"
_PENDING_VERSION = "aayu_flag_version_pending"

Publisher = Callable[[int], Awaitable[None]]
# Process-wide: the Redis publishers of the apps and CLI commands running in this process.
_publishers: list[Publisher] = []
_background: set[asyncio.Task[None]] = set()


def register_publisher(publisher: Publisher) -> None:
    _publishers.append(publisher)


def unregister_publisher(publisher: Publisher) -> None:
    with contextlib.suppress(ValueError):
        _publishers.remove(publisher)


def redis_channel(prefix: str, channel: str) -> str:
    return f"{prefix}{channel}"


async def announce(session: AsyncSession, version: int) -> None:
    """Arrange for ``version`` to be announced when the caller's transaction commits."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": PG_CHANNEL, "payload": str(version)},
        )
    sync_session = session.sync_session
    first = _PENDING_VERSION not in sync_session.info
    sync_session.info[_PENDING_VERSION] = version
    if first:
        event.listen(sync_session, "after_commit", _after_commit, once=True)
        event.listen(sync_session, "after_rollback", _after_rollback, once=True)


def _after_rollback(sync_session: Session) -> None:
    sync_session.info.pop(_PENDING_VERSION, None)


def _after_commit(sync_session: Session) -> None:
    version = sync_session.info.pop(_PENDING_VERSION, None)
    if version is None or not _publishers:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for publisher in _publishers:
        task = loop.create_task(_publish_quietly(publisher, int(version)))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _publish_quietly(publisher: Publisher, version: int) -> None:
    try:
        await publisher(version)
    except Exception as exc:  # the version poll catches up; an outage must not fail a change
        log.warning("flags.publish_failed", error=type(exc).__name__, version=version)


async def flush_pending_publishes() -> None:
    """Wait for after-commit publishes in flight (CLI commands call this before exiting)."""
    if _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_publishing(settings: Settings, channel: str) -> AsyncIterator[None]:
    """For a process without a flag runtime (a CLI command): publish its changes on Redis.

    Waits for the publishes in flight before closing, so a command's change is announced
    before the command exits. A Redis that does not answer costs the command its timeout
    (``AAYU_REDIS_TIMEOUT_SECONDS``), never a hang: the change is committed already, and
    every instance's version poll picks it up.
    """
    client = create_redis(settings)
    if client is None:
        yield
        return

    async def publish(version: int) -> None:
        await client.publish(channel, str(version))

    register_publisher(publish)
    try:
        yield
        await flush_pending_publishes()
    finally:
        unregister_publisher(publish)
        await client.aclose()
