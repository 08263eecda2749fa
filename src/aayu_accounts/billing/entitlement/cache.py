"""The per-process entitlement cache: one snapshot of an org's billing state per org.

A note is checked on every write, so the check must not query the database each time. A
snapshot is loaded once, kept ``entitlement_cache_seconds``, dropped at once when this process
commits a billing change for the org, and its usage counter is advanced after each committed
usage event. Other instances' changes are seen within the cache lifetime.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from aayu_accounts.kit import clock


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
    def __init__(self) -> None:
        self._entries: dict[str, OrgSnapshot] = {}
        self._lock = threading.Lock()

    def get(self, org_id: str, max_age: float) -> OrgSnapshot | None:
        entry = self._entries.get(org_id)
        if entry is None or clock.monotonic() - entry.loaded_at > max_age:
            return None
        return entry

    def put(self, snapshot: OrgSnapshot) -> None:
        self._entries[snapshot.org_id] = snapshot

    def invalidate(self, org_id: str) -> None:
        self._entries.pop(org_id, None)

    def clear(self) -> None:
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


cache = EntitlementCache()
