"""The rollout's leader duties run from the scheduler, in a server or a separate worker."""

from __future__ import annotations

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import LeaderElector, Scheduler
from aayu_accounts.rollout.wiring import worker_duties


async def test_worker_runs_the_schedule_and_the_monitor(
    seeded_db: Database, settings: Settings
) -> None:
    scheduler = Scheduler(LeaderElector(seeded_db, name=f"test-{id(seeded_db)}"))
    async with worker_duties(settings, seeded_db, scheduler):
        try:
            ran = await scheduler.tick()
        finally:
            await scheduler.elector.release()
    assert ran == ["rollout.flag_schedule", "rollout.seal_documents", "rollout.auto_rollback"]
