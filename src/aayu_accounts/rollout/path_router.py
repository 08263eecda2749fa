"""Which path serves a request, and serving it with FALLBACK (DESIGN.md, "Rollout").

* Sign-in (``Capability.AUTH``): ``NEW_AUTH``, bucketed on the legacy user's subject, decides
  whether a v2.5 user is checked against the legacy credentials or the new identity store.
* Documents (``Capability.DOCUMENTS``): ``NEW_DATABASE``, per user, decides legacy store or
  database.
* People who exist only in the new store always take the new path: there is nothing to send
  them back to.
* A snapshot not confirmed current within its bound sends legacy users to the legacy path.
* With ``FALLBACK`` on, an unexpected exception or a timeout on the new path is served by the
  legacy path (when the user has one), counted, and invisible to the user. An expected answer
  (an ``AppError`` below 500, e.g. wrong password, not found) is the new path working: it is
  neither a failure nor a reason to fall back.

Every request served is recorded (metrics, and the outcome window the auto-rollback monitor
reads). Deciding costs a snapshot lookup and a hash: no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from aayu_accounts.errors import AppError
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.flag.snapshot import FALLBACK, NEW_AUTH, NEW_DATABASE
from aayu_accounts.rollout.flag.store import FlagStore
from aayu_accounts.rollout.outcomes import Capability, Outcome, OutcomeWindow, RoutePath

log = structlog.get_logger(__name__)

T = TypeVar("T")

FLAG_OF: dict[Capability, str] = {
    Capability.AUTH: NEW_AUTH,
    Capability.DOCUMENTS: NEW_DATABASE,
}


@dataclass(frozen=True, slots=True)
class Decision:
    capability: Capability
    path: RoutePath
    # "new_only", "stale_snapshot", "flag_on", "flag_off": why, for logs and tests.
    reason: str
    subject: str
    has_legacy: bool
    config_version: int


class PathRouter:
    def __init__(
        self,
        flags: FlagStore,
        outcomes: OutcomeWindow | None = None,
        *,
        new_path_timeout_seconds: float = 5.0,
    ) -> None:
        self.flags = flags
        self.outcomes = outcomes or OutcomeWindow()
        self.new_path_timeout_seconds = new_path_timeout_seconds

    def decide(self, capability: Capability, subject: str, *, has_legacy: bool) -> Decision:
        snapshot = self.flags.snapshot
        if not has_legacy:
            path, reason = RoutePath.NEW, "new_only"
        elif self.flags.is_stale():
            path, reason = RoutePath.LEGACY, "stale_snapshot"
        elif snapshot.is_enabled(FLAG_OF[capability], user_id=subject):
            path, reason = RoutePath.NEW, "flag_on"
        else:
            path, reason = RoutePath.LEGACY, "flag_off"
        return Decision(capability, path, reason, subject, has_legacy, snapshot.version)

    def fallback_enabled(self, subject: str) -> bool:
        return self.flags.snapshot.is_enabled(FALLBACK, user_id=subject)

    async def serve(
        self,
        decision: Decision,
        new: Callable[[], Awaitable[T]],
        legacy: Callable[[], Awaitable[T]] | None,
    ) -> T:
        """Run the decided path; on the new path's failure, fall back when allowed.

        Raises what the path raised when there is no fallback (FALLBACK off, or no legacy
        path for this user).
        """
        capability = decision.capability
        if decision.path is RoutePath.LEGACY:
            if legacy is None:
                raise RuntimeError("legacy path decided for a user without one")
            return await self._timed(capability, RoutePath.LEGACY, legacy)
        started = time.perf_counter()
        failure: Exception
        try:
            async with asyncio.timeout(self.new_path_timeout_seconds):
                result = await new()
        except AppError as error:
            if error.status < 500:
                self._record(capability, Outcome.OK, started)
                raise
            failure, reason = error, "error"
            self._record(capability, Outcome.ERROR, started)
        except TimeoutError as error:
            failure, reason = error, "timeout"
            self._record(capability, Outcome.TIMEOUT, started)
        except Exception as error:  # any unexpected failure of the new path is what we guard
            failure, reason = error, "error"
            self._record(capability, Outcome.ERROR, started)
        else:
            self._record(capability, Outcome.OK, started)
            return result
        if legacy is None or not decision.has_legacy or not self.fallback_enabled(decision.subject):
            raise failure
        metrics.ROLLOUT_FALLBACKS.labels(capability.value, reason).inc()
        log.warning(
            "rollout.fallback",
            capability=capability.value,
            reason=reason,
            error=type(failure).__name__,
        )
        return await self._timed(capability, RoutePath.LEGACY, legacy)

    def _record(self, capability: Capability, outcome: Outcome, started: float) -> None:
        seconds = time.perf_counter() - started
        self.outcomes.record(capability, outcome, seconds)
        metrics.ROLLOUT_REQUESTS.labels(capability.value, RoutePath.NEW.value, outcome.value).inc()
        metrics.ROLLOUT_DURATION.labels(capability.value, RoutePath.NEW.value).observe(seconds)

    async def _timed(
        self, capability: Capability, path: RoutePath, call: Callable[[], Awaitable[T]]
    ) -> T:
        started = time.perf_counter()
        outcome = Outcome.ERROR
        try:
            result = await call()
        except AppError as error:
            if error.status < 500:
                outcome = Outcome.OK
            raise
        else:
            outcome = Outcome.OK
            return result
        finally:
            seconds = time.perf_counter() - started
            metrics.ROLLOUT_REQUESTS.labels(capability.value, path.value, outcome.value).inc()
            metrics.ROLLOUT_DURATION.labels(capability.value, path.value).observe(seconds)
