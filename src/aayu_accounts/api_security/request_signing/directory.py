"""Service-client credentials by key id, cached per process.

A signed request should not cost a database round trip and a decryption each time. A rotation
or a disable drops the key id here and, through Redis, on every instance as soon as it commits
(``service_client/changes.py``); ``ttl_seconds`` (``AAYU_CLIENT_CACHE_SECONDS``) still bounds
how long a lost message can matter. With Redis, nothing is cached while this process is not
subscribed to those changes (``kit/invalidation_listener.py``). Unknown key ids are not
cached, so a client created a moment ago works at once. Concurrent misses for one key id share
one lookup, so an expiry under load costs one pooled connection, not one per request in
flight, and an entry in use is reloaded in the background once half its lifetime has passed,
so it does not lapse at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from aayu_accounts.api_security.service_client import changes
from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.api_security.service_client.service import ClientCredentials
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.invalidation_listener import listener_for

log = structlog.get_logger(__name__)

MAX_ENTRIES = 10_000
# Past this fraction of its lifetime an entry in use is reloaded in the background.
REFRESH_AFTER = 0.5


class ClientDirectory:
    def __init__(
        self, db: Database, ttl_seconds: float, *, redis: Any = None, channel: str | None = None
    ) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, ClientCredentials]] = {}
        self._loading: dict[str, asyncio.Task[ClientCredentials | None]] = {}
        # Bumped by every forget: a lookup that started before it is answered, never cached.
        self._generation = 0
        self._redis = redis
        # Changes made while not subscribed were missed: on a gap it starts afresh.
        self._listener = listener_for(
            redis, channel, "client_directory", self._receive, self.forget
        )
        self._never = asyncio.Event()  # ``listening`` without Redis: never set
        changes.register(self)

    async def lookup(self, key_id: str) -> ClientCredentials | None:
        cached = self._entries.get(key_id)
        if cached is not None:
            age = clock.monotonic() - cached[0]
            if age < self.ttl_seconds:
                if age >= self.ttl_seconds * REFRESH_AFTER and key_id not in self._loading:
                    # Refreshed ahead, in the background: a client in steady use never has
                    # its requests wait for the database (a failed refresh leaves the entry
                    # to lapse at its lifetime, as before).
                    self._start_load(key_id)
                return cached[1]
        loading = self._loading.get(key_id) or self._start_load(key_id)
        # Shielded: a caller that goes away does not cancel the others' lookup.
        return await asyncio.shield(loading)

    def _start_load(self, key_id: str) -> asyncio.Task[ClientCredentials | None]:
        loading = asyncio.get_running_loop().create_task(self._load(key_id, self._generation))
        self._loading[key_id] = loading
        loading.add_done_callback(lambda done: self._loaded(key_id, done))
        return loading

    def _loaded(self, key_id: str, done: asyncio.Task[ClientCredentials | None]) -> None:
        if self._loading.get(key_id) is done:
            del self._loading[key_id]
        if not done.cancelled():
            done.exception()  # retrieved, even if every caller has gone

    async def _load(self, key_id: str, generation: int) -> ClientCredentials | None:
        async with self.db.session_scope(write=False) as session:
            found = await client_service.credentials(session, key_id)
        if found is None:
            self._entries.pop(key_id, None)
            return None
        # Nothing is kept while deaf (a change made elsewhere meanwhile would not reach this
        # copy); what was kept before went with the gap's forget.
        if self.ttl_seconds > 0 and generation == self._generation and not self.deaf:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_id] = (clock.monotonic(), found)
        return found

    def forget(self, key_id: str | None = None) -> None:
        self._generation += 1
        if key_id is None:
            self._entries.clear()
            self._loading.clear()
        else:
            self._entries.pop(key_id, None)
            self._loading.pop(key_id, None)

    # --- cross-instance invalidation (service_client/changes.py) ----------------------

    def publisher(self) -> tuple[Any, str] | None:
        if self._listener is None or not self._listener.running:
            return None  # no Redis, or stopped (its client closed)
        return self._redis, self._listener.channel

    def start(self) -> None:
        """Listen for other instances' changes (with Redis; needs a running loop)."""
        if self._listener is not None:
            self._listener.start_soon()

    @property
    def listening(self) -> asyncio.Event:
        """Set while subscribed to other instances' changes (tests wait for it)."""
        return self._never if self._listener is None else self._listener.listening

    @property
    def deaf(self) -> bool:
        """With Redis, credentials are cached only while this process hears other instances'
        rotations and disables: deaf (not subscribed yet, or the subscription lost), every
        lookup goes to the database, so a key disabled elsewhere stops verifying at once."""
        return self._listener is not None and not self._listener.subscribed

    def _receive(self, raw: Any) -> None:
        key_ids = changes.key_ids_of(raw)
        if key_ids is None:
            self.forget()
        else:
            for key_id in key_ids:
                self.forget(key_id)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        # Lookups in flight finish (bounded by the database timeouts): cancelling one would
        # leave its connection mid-statement.
        if self._loading:
            await asyncio.gather(*self._loading.values(), return_exceptions=True)
        self._loading.clear()
