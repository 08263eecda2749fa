"""The snapshot an instance serves from, and how fresh it is.

Reading the snapshot is one attribute load: evaluations never wait for I/O. A new snapshot
replaces the old one whole (it is immutable), so a reader sees either the old configuration
or the new one, never a mix.
"""

from __future__ import annotations

import math

from aayu_accounts.kit import clock
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.flag.snapshot import FlagSnapshot


class FlagStore:
    def __init__(self, max_staleness_seconds: float = 30.0) -> None:
        self.max_staleness_seconds = max_staleness_seconds
        self._snapshot = FlagSnapshot.empty()
        self._confirmed_at = -math.inf

    @property
    def snapshot(self) -> FlagSnapshot:
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    def install(self, snapshot: FlagSnapshot, *, source: str) -> bool:
        """Serve ``snapshot`` from now on; returns whether the version changed.

        A different version replaces the current one even when it is lower: after a database
        restore the database's configuration is the truth.
        """
        changed = snapshot.version != self._snapshot.version
        if changed:
            self._snapshot = snapshot
            metrics.FLAG_UPDATES.labels(source).inc()
            metrics.FLAG_CONFIG_VERSION.set(snapshot.version)
        self.confirm()
        return changed

    def confirm(self) -> None:
        """The snapshot was just checked against the database and is current."""
        self._confirmed_at = clock.monotonic()
        metrics.FLAG_SNAPSHOT_AGE.set(0)

    def age_seconds(self) -> float:
        return clock.monotonic() - self._confirmed_at

    def is_stale(self) -> bool:
        """True when the snapshot has not been confirmed within the staleness bound (or ever).

        The path router then serves the legacy path, which needs no flag to be right.
        """
        return self.age_seconds() > self.max_staleness_seconds
