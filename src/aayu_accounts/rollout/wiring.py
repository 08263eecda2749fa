"""How the rollout plugs into the application (called from ``app.py``, the composition root)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Scheduler
from aayu_accounts.rollout.auto_rollback.monitor import AutoRollbackMonitor
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.runtime import FlagRuntime

# Imported for its job handler (the incident report writer) to be registered.
from aayu_accounts.rollout.incident import service as incident_service  # noqa: F401
from aayu_accounts.rollout.legacy.credentials import LegacyCredentials
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.outcomes import Capability, WindowStats
from aayu_accounts.rollout.path_router import PathRouter
from aayu_accounts.rollout.settings import RolloutSettings

# Imported for its job handler (shadow copies) to be registered.
from aayu_accounts.rollout.shadow import tasks as shadow_tasks  # noqa: F401
from aayu_accounts.rollout.user_data.repository import SEAL_BATCH, seal_plaintext_documents

SCHEDULE_PERIOD_SECONDS = 15.0
SEAL_PERIOD_SECONDS = 60.0


async def apply_flag_schedule(db: Database) -> None:
    async with db.session_scope() as session:
        await flag_service.apply_due_steps(session)


async def seal_documents(db: Database) -> None:
    """Seal the documents left in plaintext by versions before migration 0011, a batch at a
    time until none is left (then each run is one empty query)."""
    while True:
        async with db.session_scope() as session:
            sealed = await seal_plaintext_documents(session)
        if sealed < SEAL_BATCH:
            return


class RuntimeOutcomes:
    """The monitor's view: every instance's outcomes via Redis, else this process's."""

    def __init__(self, runtime: FlagRuntime) -> None:
        self.runtime = runtime

    async def read_window(
        self, capability: Capability, seconds: float, *, since: float | None = None
    ) -> WindowStats:
        if self.runtime.shared_outcomes is not None:
            await self.runtime.flush_outcomes()
            return await self.runtime.shared_outcomes.read_window(capability, seconds, since=since)
        return await self.runtime.outcomes.read_window(capability, seconds, since=since)


def periodic_registration(runtime: FlagRuntime) -> Callable[[Scheduler, Settings], None]:
    def register(scheduler: Scheduler, _settings: Settings) -> None:
        """Leader-only duties of the rollout: the flag schedule and the auto-rollback."""
        scheduler.every(SCHEDULE_PERIOD_SECONDS, "rollout.flag_schedule", apply_flag_schedule)
        scheduler.every(SEAL_PERIOD_SECONDS, "rollout.seal_documents", seal_documents)
        if not runtime.rollout.auto_rollback_enabled:
            return
        monitors: dict[int, AutoRollbackMonitor] = {}

        async def auto_rollback(db: Database) -> None:
            monitor = monitors.get(id(db))
            if monitor is None:
                monitor = AutoRollbackMonitor(db, RuntimeOutcomes(runtime), runtime.rollout)
                monitors[id(db)] = monitor
            await monitor.check()

        scheduler.every(
            runtime.rollout.auto_rollback_interval_seconds, "rollout.auto_rollback", auto_rollback
        )

    return register


@asynccontextmanager
async def worker_duties(
    settings: Settings,
    db: Database,
    scheduler: Scheduler,
    rollout: RolloutSettings | None = None,
) -> AsyncIterator[FlagRuntime]:
    """The rollout's leader duties in ``aayu-accounts worker`` (a process serving no HTTP).

    Starts a flag runtime there, through which the monitor reads every instance's outcomes
    (from Redis: a separate worker needs it to see the servers' traffic), and registers the
    flag schedule and the auto-rollback on ``scheduler``. Usage in the worker command::

        async with worker_duties(settings, db, scheduler):
            await asyncio.gather(job_worker.run_forever(stop), scheduler.run_forever(stop))
    """
    runtime = FlagRuntime(settings, rollout)
    await runtime.start(db)
    periodic_registration(runtime)(scheduler, settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


def install(app: FastAPI, settings: Settings, rollout: RolloutSettings | None = None) -> None:
    """Attach the flag runtime, its readiness detail and the leader duties to ``app``."""
    runtime = FlagRuntime(settings, rollout)
    app.state.flag_runtime = runtime
    router = PathRouter(
        runtime.store,
        runtime.outcomes,
        new_path_timeout_seconds=runtime.rollout.new_path_timeout_seconds,
    )

    def retune(changed: RolloutSettings) -> None:
        router.new_path_timeout_seconds = changed.new_path_timeout_seconds

    runtime.on_configure.append(retune)
    app.state.rollout = RolloutContext(
        router=router,
        legacy_credentials=LegacyCredentials(settings.legacy_auth_file),
        legacy_store=LegacyDocumentStore(settings.legacy_store_dir),
    )

    async def flags_ready(_request: Request) -> dict[str, Any]:
        return runtime.readiness()

    app.state.readiness_checks["flags"] = flags_ready
    app.state.periodic_registrations.append(periodic_registration(runtime))


def flag_runtime(app: FastAPI) -> FlagRuntime:
    runtime: FlagRuntime = app.state.flag_runtime
    return runtime
