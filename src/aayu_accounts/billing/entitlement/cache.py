"""The entitlement cache: one snapshot of an org's billing state per org, per instance.

A note is checked on every write, so the check must not query the database each time. A
snapshot is loaded once and kept ``entitlement_cache_seconds``; a billing change for the org
(subscription, plan, seats, status, members) drops it at once everywhere:

* :meth:`EntitlementCache.mark` drops it from this instance at once and again after the
  transaction commits (so a request racing the transaction cannot re-cache the old state);
  a rollback publishes nothing (DESIGN rule 3);
* after the commit the org id is published on Redis (``{prefix}billing:entitlement-invalidate``)
  and every instance listening drops its snapshot, the same fan-out as the session cache's
  (``identity/auth_session/cache.py``). A process without a listener of its own (the
  ``aayu-accounts worker``, a CLI command) publishes through a short-lived connection;
* an instance keeps snapshots only while subscribed (``kit/invalidation_listener.py``): not
  subscribed yet or the subscription lost, every check loads afresh;
* without Redis (embedded mode: one process) the in-process drop is all there is;
* the lifetime still bounds staleness when Redis loses a message (pub/sub does not replay to a
  subscriber that was reconnecting).

Usage is not published: each instance advances its own counter after each usage event it
commits, and sees other instances' usage when its snapshot expires (quota overshoot is
bounded by the lifetime).

Which cache: each app instance has its own (``app.state.entitlement_cache``), bound to its
requests and background tasks through a context variable (:func:`bind`); code running outside
an app (CLI, worker jobs, tests calling services) uses the process's default :data:`cache`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing import runtime
from aayu_accounts.billing.hooks import after_commit
from aayu_accounts.kit import clock
from aayu_accounts.kit.invalidation_listener import listener_for
from aayu_accounts.kit.redis_client import create_redis

log = structlog.get_logger(__name__)

CHANNEL_SUFFIX = "billing:entitlement-invalidate"


@dataclass
class OrgSnapshot:
    org_id: str
    status: str | None
    plan_id: str | None
    features: frozenset[str]
    seats: int
    period_start: datetime | None
    period_end: datetime | None
    past_due_since: datetime | None
    notes_included: int
    notes_used: int
    # Active members: user_id -> role; and the clinicians holding a paid seat.
    members: dict[str, str]
    seated: frozenset[str]
    loaded_at: float = field(default_factory=clock.monotonic)


class EntitlementCache:
    def __init__(self, redis: Any = None, channel: str | None = None) -> None:
        self._entries: dict[str, OrgSnapshot] = {}
        self._lock = threading.Lock()
        self._redis = redis
        self._channel = channel
        # Messages may have been lost while not subscribed: on a gap it drops everything.
        self._listener = listener_for(redis, channel, "entitlement_cache", self.apply, self.clear)
        self._publishes: set[asyncio.Task[Any]] = set()
        # Bumped by every invalidation: a snapshot is kept only if none came in while it was
        # loading, so a change committed meanwhile (here or elsewhere) is never papered over.
        self.generation = 0

    @property
    def deaf(self) -> bool:
        """With a listener, snapshots are kept only while it hears other instances' changes:
        deaf (not subscribed yet, or the subscription lost), every check loads afresh."""
        return self._listener is not None and not self._listener.subscribed

    @property
    def redis(self) -> Any:
        return self._redis

    # --- lookups -------------------------------------------------------------------

    def get(self, org_id: str, max_age: float) -> OrgSnapshot | None:
        entry = self._entries.get(org_id)
        if entry is None or clock.monotonic() - entry.loaded_at > max_age:
            return None
        return entry

    def put(self, snapshot: OrgSnapshot, *, loaded_at: int) -> None:
        """Keep ``snapshot``, loaded from the database when :attr:`generation` was
        ``loaded_at``."""
        if self.deaf or loaded_at != self.generation:
            return
        self._entries[snapshot.org_id] = snapshot

    def invalidate(self, org_id: str) -> None:
        self.generation += 1
        self._entries.pop(org_id, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def add_usage(self, org_id: str, metric: str, quantity: int, occurred_at: datetime) -> None:
        if metric != "notes":
            return
        with self._lock:
            entry = self._entries.get(org_id)
            if entry is None or entry.period_start is None or entry.period_end is None:
                return
            if entry.period_start <= occurred_at < entry.period_end:
                entry.notes_used += quantity

    # --- invalidation across instances ---------------------------------------------

    def mark(self, session: AsyncSession, org_id: str) -> None:
        """Drop ``org_id`` now, and again here and on every instance once ``session``
        commits (nothing is published when it rolls back)."""
        self.invalidate(org_id)
        after_commit(
            session, lambda: self.committed(org_id), once_key=("entitlements", id(self), org_id)
        )

    def committed(self, org_id: str) -> None:
        """After a commit that changed ``org_id``'s billing: drop it here, tell the others."""
        self.invalidate(org_id)
        channel = self._channel or _default_channel()
        if channel is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish(channel, org_id))
        self._publishes.add(task)
        task.add_done_callback(self._publishes.discard)

    async def _publish(self, channel: str, org_id: str) -> None:
        message = json.dumps({"orgs": [org_id]})
        try:
            if self._redis is not None:
                await self._redis.publish(channel, message)
                return
            # No connection of our own (worker, CLI): a short-lived one, closed at once.
            client = create_redis(runtime.current().settings)
            if client is None:
                return
            async with client:
                await client.publish(channel, message)
        except Exception:
            # Other instances fall back on the cache lifetime; the change itself is committed.
            log.warning("entitlement_cache.publish_failed")

    def apply(self, raw: str | bytes) -> None:
        """An invalidation received from another instance."""
        data = json.loads(raw)
        if data.get("all"):
            self.clear()
            return
        for org_id in data.get("orgs", []):
            self.invalidate(str(org_id))

    async def start(self) -> None:
        """Listen for other instances' invalidations (with Redis configured); Redis away at
        start-up does not stop the instance (the cache stays off until it subscribes)."""
        if self._listener is not None:
            await self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        await self.drain()

    async def drain(self) -> None:
        """Wait for the publications in flight (shutdown, tests)."""
        if self._publishes:
            await asyncio.gather(*self._publishes, return_exceptions=True)


def _default_channel() -> str | None:
    """The channel a process without a listener publishes on, when Redis is configured."""
    settings = runtime.current().settings
    if not settings.redis_url:
        return None
    return f"{settings.redis_prefix}{CHANNEL_SUFFIX}"


cache = EntitlementCache()
"""The process's default cache (code outside an app instance)."""

_bound: contextvars.ContextVar[EntitlementCache | None] = contextvars.ContextVar(
    "aayu_entitlement_cache", default=None
)


def current() -> EntitlementCache:
    """The cache of the app instance serving this request or task, else the default."""
    return _bound.get() or cache


@contextlib.contextmanager
def bind(bound: EntitlementCache) -> Iterator[None]:
    token = _bound.set(bound)
    try:
        yield
    finally:
        _bound.reset(token)


def bind_for_task(bound: EntitlementCache) -> None:
    """Bind for the rest of the current task and the tasks it starts (app start-up)."""
    _bound.set(bound)
