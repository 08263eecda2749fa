"""Per-process flag machinery: load, listen, poll, report.

Started from the application's lifespan, i.e. after any fork (NOTES.md: clients started
before a fork silently stop updating). One listener per process:

* Redis pub/sub when ``AAYU_REDIS_URL`` is set (production);
* else PostgreSQL ``LISTEN`` on PostgreSQL;
* else (SQLite, embedded, one process) nothing: changes in this process are installed
  directly after commit, and the poll catches changes made by a CLI command.

Whatever the listener, a version poll every ``flag_poll_seconds`` is the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit.redis_client import create_redis
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.flag import fanout, loader
from aayu_accounts.rollout.flag.store import FlagStore
from aayu_accounts.rollout.outcomes import OutcomeWindow, RedisOutcomes
from aayu_accounts.rollout.settings import RolloutSettings

log = structlog.get_logger(__name__)

RECONNECT_SECONDS = 1.0
OUTCOME_FLUSH_SECONDS = 1.0
ANNOUNCEMENT_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.0)


class FlagRuntime:
    def __init__(self, settings: Settings, rollout: RolloutSettings | None = None) -> None:
        self.settings = settings
        self.rollout = rollout or RolloutSettings()
        self.store = FlagStore(self.rollout.flag_max_staleness_seconds)
        # Outcomes of the new path in this process; with Redis, flushed there every second so
        # the leader's auto-rollback monitor sees every instance.
        self.outcomes = OutcomeWindow()
        self.shared_outcomes: RedisOutcomes | None = None
        self.listener_kind = "none"
        self.listener_connected = False
        self._db: Database | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._redis: Any = None
        self._publisher: Callable[[int], Awaitable[None]] | None = None
        self.on_configure: list[Callable[[RolloutSettings], None]] = []

    def configure(self, rollout: RolloutSettings) -> None:
        """Replace the rollout settings (before ``start``; tests tune intervals this way)."""
        self.rollout = rollout
        self.store.max_staleness_seconds = rollout.flag_max_staleness_seconds
        for hook in self.on_configure:
            hook(rollout)

    @property
    def redis_channel(self) -> str:
        return fanout.redis_channel(self.settings.redis_prefix, self.rollout.flag_channel)

    async def start(self, db: Database) -> None:
        self._db = db
        self._stop.clear()
        try:
            await self.reload(source="start")
        except Exception as exc:  # a stale (empty) snapshot serves the legacy path meanwhile
            log.warning("flags.initial_load_failed", error=type(exc).__name__)
        if isinstance(db.bind, AsyncConnection):
            # A Database bound to one connection (the test harness) cannot be queried from
            # background tasks while requests use it; the caller reloads explicitly.
            self.listener_kind = "manual"
            return
        if self.settings.redis_url:
            self._redis = create_redis(self.settings)
            self._publisher = self._publish_redis
            fanout.register_publisher(self._publisher)
            self.listener_kind = "redis"
            self._spawn(self._listen_redis(), "aayu-flags-redis")
            self.shared_outcomes = RedisOutcomes(self._redis, self.settings.redis_prefix)
            self._spawn(self._flush_outcomes(), "aayu-outcomes-flush")
        else:
            # Changes committed in this very process apply at once, whatever the database.
            self._publisher = self._reload_local
            fanout.register_publisher(self._publisher)
            if db.dialect == "postgresql":
                self.listener_kind = "postgresql"
                self._spawn(self._listen_postgres(), "aayu-flags-listen")
        self._spawn(self._poll(), "aayu-flags-poll")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(work))
        self._tasks[-1].set_name(name)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.flush_outcomes()
        self.shared_outcomes = None
        if self._publisher is not None:
            fanout.unregister_publisher(self._publisher)
            self._publisher = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def reload(self, *, source: str) -> bool:
        """Load the database's configuration if its version differs; returns whether it did."""
        assert self._db is not None
        async with self._reload_lock:
            async with self._db.session_scope(write=False) as session:
                version = await loader.current_version(session)
                if version == self.store.version:
                    self.store.confirm()
                    return False
                snapshot = await loader.load_snapshot(session)
            changed = self.store.install(snapshot, source=source)
        if changed:
            log.info("flags.applied", version=snapshot.version, source=source)
        return changed

    async def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rollout.flag_poll_seconds):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                await self.reload(source="poll")
            except Exception as exc:  # the snapshot ages; past the bound the legacy path serves
                log.warning("flags.poll_failed", error=type(exc).__name__)

    async def _flush_outcomes(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTCOME_FLUSH_SECONDS):
                    await self._stop.wait()
            await self.flush_outcomes()

    async def flush_outcomes(self) -> None:
        if self.shared_outcomes is None:
            return
        taken = self.outcomes.take_unflushed()
        try:
            await self.shared_outcomes.push(taken)
        except Exception as exc:  # kept for the next flush; the monitor sees them late
            self.outcomes.restore_unflushed(taken)
            log.warning("rollout.outcomes_flush_failed", error=type(exc).__name__)

    async def _on_announcement(self, payload: object, source: str) -> None:
        try:
            announced = int(str(payload))
        except ValueError:
            announced = -1
        log.debug("flags.announced", version=announced, applied=self.store.version, source=source)
        if announced == self.store.version:
            self.store.confirm()
            return
        for delay in ANNOUNCEMENT_RETRY_DELAYS:
            try:
                await self.reload(source=source)
            except Exception as exc:
                log.warning("flags.reload_failed", error=type(exc).__name__, source=source)
            # An announcement is sent after its commit; should this instance still read an
            # older version (a replica, a slow snapshot), look again shortly rather than
            # wait for the poll.
            if announced < 0 or self.store.version >= announced:
                return
            await asyncio.sleep(delay)

    async def _reload_local(self, version: int) -> None:
        await self._on_announcement(version, "local")

    async def _publish_redis(self, version: int) -> None:
        if self._redis is not None:
            await self._redis.publish(self.redis_channel, str(version))

    async def _listen_redis(self) -> None:
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.redis_channel)
                self.listener_connected = True
                # Messages sent while we were away are lost: catch up once subscribed.
                await self.reload(source="pubsub")
                while not self._stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message.get("data")
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        await self._on_announcement(text, "pubsub")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("flags.redis_listener_failed", error=type(exc).__name__)
            finally:
                self.listener_connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONNECT_SECONDS):
                    await self._stop.wait()

    async def _listen_postgres(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - PostgreSQL only

        assert self._db is not None
        url = make_url(self.settings.database_url)
        if url.get_backend_name() != "postgresql":
            url = self._db.engine.url
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            connection = None
            try:
                connection = await asyncpg.connect(dsn, timeout=5)
                queue: asyncio.Queue[str] = asyncio.Queue()

                def on_notify(
                    _conn: Any,
                    _pid: int,
                    _channel: str,
                    payload: str,
                    inbox: asyncio.Queue[str] = queue,
                ) -> None:
                    loop.call_soon_threadsafe(inbox.put_nowait, payload)

                await connection.add_listener(fanout.PG_CHANNEL, on_notify)
                self.listener_connected = True
                await self.reload(source="notify")
                while not self._stop.is_set() and not connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            payload = await queue.get()
                            await self._on_announcement(payload, "notify")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("flags.pg_listener_failed", error=type(exc).__name__)
            finally:
                self.listener_connected = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONNECT_SECONDS):
                    await self._stop.wait()

    def readiness(self) -> dict[str, Any]:
        """The ``/ready`` detail: the version this instance applied and how fresh it is.

        A stale snapshot does not make the instance unready: it serves the legacy path,
        which is the safe answer, and says so here.
        """
        age = self.store.age_seconds()
        metrics.FLAG_SNAPSHOT_AGE.set(age if age != float("inf") else -1)
        return {
            "ok": True,
            "config_version": self.store.version,
            "snapshot_age_s": round(age, 3) if age != float("inf") else None,
            "stale": self.store.is_stale(),
            "listener": self.listener_kind,
            "listener_connected": self.listener_connected,
        }
