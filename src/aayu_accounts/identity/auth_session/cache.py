"""A per-process cache of session lookups, invalidated at once when a session is revoked.

Why: an authenticated request should cost no database round trip. Why it stays correct:

* every revocation (logout, deactivation, password change, ...) and every change to what a
  cached principal carries (MFA, accepted policies, a clinic's ``require_mfa``) marks the
  affected entries on the database session doing it; they are dropped from this process's cache
  right away and again after the commit (so a request racing the transaction cannot re-cache
  the old state), and the commit publishes the same invalidation on Redis, which every other
  instance listens to;
* entries also expire after ``session_cache_seconds`` anyway: Redis pub/sub loses messages
  while a subscriber reconnects, and this bounds how long such a loss can matter. Each entry
  lives between three quarters of that and all of it, spread by its token: sessions signed in
  together (a clinic opening in the morning, a load test) do not all reload in the same second.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aayu_accounts.kit import clock
from aayu_accounts.kit.invalidation_listener import listener_for

log = structlog.get_logger(__name__)

_PENDING_KEY = "aayu_session_cache_invalidations"


@dataclass
class CachedPrincipal:
    """What a request needs to know about its session, without touching the database."""

    session_id: str
    token_hash: str
    user_id: str
    is_platform_admin: bool
    mfa_enabled: bool
    created_at: datetime
    expires_at: datetime
    idle_timeout_seconds: int
    # Last activity seen by this process, and the value last written to the database.
    last_seen_at: datetime
    last_written_at: datetime
    # Actions the user must complete before anything else (e.g. "mfa_enrollment").
    required_actions: tuple[str, ...]
    loaded_monotonic: float = field(default=0.0)
    expires_monotonic: float = field(default=0.0)
    # The rendered ``GET /me`` body, filled on first use; every change to what it shows
    # (memberships, roles, clinic names, MFA) invalidates the user's entries.
    profile: Any = None
    # The active memberships' org ids, as ``POST /service/sessions/introspect`` answers them,
    # filled on first use; invalidated with the user's entries, as ``profile`` is.
    org_ids: tuple[str, ...] | None = None


@dataclass
class Invalidation:
    token_hashes: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    everything: bool = False

    def merge(self, other: Invalidation) -> None:
        self.token_hashes |= other.token_hashes
        self.user_ids |= other.user_ids
        self.everything = self.everything or other.everything

    def to_json(self) -> str:
        return json.dumps(
            {
                "tokens": sorted(self.token_hashes),
                "users": sorted(self.user_ids),
                "all": self.everything,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Invalidation:
        data = json.loads(raw)
        return cls(set(data.get("tokens", [])), set(data.get("users", [])), bool(data.get("all")))


def _spread(token_hash: str) -> float:
    """A share of the lifetime between 0.75 and 1, fixed per token (spread by its hash)."""
    return 0.75 + 0.25 * ((zlib.crc32(token_hash.encode()) & 0xFFFF) / 0x10000)


class SessionCache:
    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = 50_000,
        redis: Any = None,
        channel: str = "aayu:identity:session-invalidate",
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedPrincipal] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._redis = redis
        self._channel = channel
        self._listener = listener_for(
            redis, channel, "session_cache", self._receive, self._forget_all
        )
        self._publishes: set[asyncio.Task[Any]] = set()
        # Bumped by every invalidation applied here. A lookup loaded from the database is
        # cached only if none came in while it was loading: otherwise a revocation (from this
        # instance's commit or another's message) that lands between the read and the put
        # would be undone by the put, and the revoked session served until its entry expires.
        self.generation = 0

    @property
    def deaf(self) -> bool:
        """With Redis configured, this process only caches while it hears other instances'
        revocations: deaf (not subscribed yet, or the subscription lost), every lookup goes
        to the database, so a session revoked elsewhere is never served from here."""
        return self._listener is not None and not self._listener.subscribed

    # --- lookups -------------------------------------------------------------------

    def get(self, token_hash: str) -> CachedPrincipal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if clock.monotonic() > entry.expires_monotonic:
            self._drop(token_hash)
            return None
        self._entries.move_to_end(token_hash)
        return entry

    def put(self, entry: CachedPrincipal, *, loaded_at: int) -> None:
        """Cache ``entry``, read from the database when :attr:`generation` was ``loaded_at``."""
        if self.ttl_seconds <= 0 or self.deaf or loaded_at != self.generation:
            return
        entry.loaded_monotonic = clock.monotonic()
        entry.expires_monotonic = entry.loaded_monotonic + self.ttl_seconds * _spread(
            entry.token_hash
        )
        self._entries[entry.token_hash] = entry
        self._entries.move_to_end(entry.token_hash)
        self._by_user.setdefault(entry.user_id, set()).add(entry.token_hash)
        while len(self._entries) > self.max_entries:
            oldest, _ = next(iter(self._entries.items()))
            self._drop(oldest)

    def __len__(self) -> int:
        return len(self._entries)

    # --- invalidation --------------------------------------------------------------

    def _drop(self, token_hash: str) -> None:
        entry = self._entries.pop(token_hash, None)
        if entry is not None:
            hashes = self._by_user.get(entry.user_id)
            if hashes is not None:
                hashes.discard(token_hash)
                if not hashes:
                    del self._by_user[entry.user_id]

    def apply(self, invalidation: Invalidation) -> None:
        """Drop the entries an invalidation names (this process only)."""
        self.generation += 1
        if invalidation.everything:
            self._entries.clear()
            self._by_user.clear()
            return
        for token_hash in invalidation.token_hashes:
            self._drop(token_hash)
        for user_id in invalidation.user_ids:
            for token_hash in list(self._by_user.get(user_id, ())):
                self._drop(token_hash)

    def mark(self, session: AsyncSession, invalidation: Invalidation) -> None:
        """Invalidate now, and again (here and on every instance) once ``session`` commits."""
        self.apply(invalidation)
        pending = session.sync_session.info.setdefault(_PENDING_KEY, {})
        current = pending.get(id(self))
        if current is None:
            pending[id(self)] = (self, invalidation)
        else:
            current[1].merge(invalidation)

    def after_commit(self, invalidation: Invalidation) -> None:
        self.apply(invalidation)
        if self._redis is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish(invalidation))
        self._publishes.add(task)
        task.add_done_callback(self._publishes.discard)

    async def _publish(self, invalidation: Invalidation) -> None:
        try:
            await self._redis.publish(self._channel, invalidation.to_json())
        except Exception:
            # Other instances fall back on the cache TTL; the revocation itself is committed.
            log.warning("session_cache.publish_failed")

    # --- cross-instance fan-out ----------------------------------------------------

    async def start(self) -> None:
        """Subscribe (so the first requests already cache) and keep listening.

        Redis away at start-up does not keep the instance from starting: it serves without
        the cache (``deaf``) and the listener keeps trying to subscribe.
        """
        if self._listener is not None:
            await self._listener.start()

    def _receive(self, raw: Any) -> None:
        self.apply(Invalidation.from_json(raw))

    def _forget_all(self) -> None:
        # Whatever was revoked while this process was not listening is unknown: start afresh.
        self.apply(Invalidation(everything=True))

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        if self._publishes:
            await asyncio.gather(*self._publishes, return_exceptions=True)


@event.listens_for(Session, "after_commit")
def _on_commit(sync_session: Session) -> None:
    pending = sync_session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    for cache, invalidation in pending.values():
        cache.after_commit(invalidation)
