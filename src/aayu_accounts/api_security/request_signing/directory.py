"""Service-client credentials by key id, cached briefly per process.

A signed request should not cost a database round trip and a decryption each time; a disable
or rotation reaches every instance within ``ttl_seconds`` (``AAYU_CLIENT_CACHE_SECONDS``).
Unknown key ids are not cached, so a client created a moment ago works at once.
"""

from __future__ import annotations

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.api_security.service_client.service import ClientCredentials
from aayu_accounts.db import Database
from aayu_accounts.kit import clock

MAX_ENTRIES = 10_000


class ClientDirectory:
    def __init__(self, db: Database, ttl_seconds: float) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, ClientCredentials]] = {}

    async def lookup(self, key_id: str) -> ClientCredentials | None:
        cached = self._entries.get(key_id)
        if cached is not None and clock.monotonic() - cached[0] < self.ttl_seconds:
            return cached[1]
        async with self.db.session_scope(write=False) as session:
            found = await client_service.credentials(session, key_id)
        if found is None:
            self._entries.pop(key_id, None)
            return None
        if self.ttl_seconds > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_id] = (clock.monotonic(), found)
        return found

    def forget(self, key_id: str | None = None) -> None:
        if key_id is None:
            self._entries.clear()
        else:
            self._entries.pop(key_id, None)
