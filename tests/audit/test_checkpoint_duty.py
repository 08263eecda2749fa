"""The leader's checkpoint duty: signed file outside the database, events, gaps, scheduling."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.chain import GENESIS_HASH
from aayu_accounts.audit.checkpoint import (
    KeyringCheckpointSigner,
    iter_checkpoint_files,
    latest_checkpoint,
    parse_checkpoint,
    verify_checkpoint,
)
from aayu_accounts.audit.tasks import periodic_registration, write_checkpoint
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring, install_keyring
from aayu_accounts.db import Database
from aayu_accounts.jobs import LeaderElector, Scheduler
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.helpers import seed, verify
from tests.fixtures.database import make_settings


def _settings(tmp_path: Path) -> Settings:
    return make_settings(
        "sqlite+aiosqlite:///unused.db", tmp_path, audit_checkpoint_dir=tmp_path / "checkpoints"
    )


async def _actions(db: Database) -> list[str]:
    async with db.session_scope(write=False) as session:
        rows = await session.scalars(select(AuditEvent.action).order_by(AuditEvent.sequence))
        return list(rows)


async def test_empty_trail_checkpoint(trail_db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    checkpoint = await write_checkpoint(trail_db, settings, KeyringCheckpointSigner())
    assert (checkpoint.sequence, checkpoint.hash) == (0, GENESIS_HASH)
    assert await _actions(trail_db) == [AuditAction.CHECKPOINT_WRITTEN.value]


async def test_checkpoint_signs_the_committed_head_and_is_recorded(
    trail_db: Database, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    events = await seed(trail_db, 5)
    signer = KeyringCheckpointSigner()
    checkpoint = await write_checkpoint(trail_db, settings, signer)
    assert (checkpoint.sequence, checkpoint.hash) == (5, events[-1].hash)
    files = list(iter_checkpoint_files(settings.audit_checkpoint_path))
    assert len(files) == 1
    stored = parse_checkpoint(files[0].read_text())
    assert stored == checkpoint
    assert verify_checkpoint(signer, stored)
    document = json.loads(files[0].read_text())
    assert document["key_id"].startswith("audit-signing:v")
    # Another key (an intruder's) cannot make one that verifies.
    previous = install_keyring(Keyring.generate())
    try:
        assert not verify_checkpoint(signer, stored)
    finally:
        install_keyring(previous)
    actions = await _actions(trail_db)
    assert actions[-1] == AuditAction.CHECKPOINT_WRITTEN.value
    report = await verify(trail_db, checkpoint_dir=settings.audit_checkpoint_path, signer=signer)
    assert report.ok
    assert report.checkpoints_checked == 1
    assert report.checked == 6


async def test_a_gap_in_checkpoints_is_an_event(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = _settings(tmp_path)
    signer = KeyringCheckpointSigner()
    await write_checkpoint(trail_db, settings, signer)
    frozen_clock.advance(timedelta(seconds=settings.audit_checkpoint_interval_seconds))
    await write_checkpoint(trail_db, settings, signer)
    assert AuditAction.CHECKPOINT_GAP_DETECTED.value not in await _actions(trail_db)
    frozen_clock.advance(timedelta(hours=5))
    await write_checkpoint(trail_db, settings, signer)
    async with trail_db.session_scope(write=False) as session:
        gap = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == AuditAction.CHECKPOINT_GAP_DETECTED.value
                )
            )
        ).one()
        assert gap.outcome == "failure"
        assert gap.details["gap_seconds"] == 5 * 3600
        assert gap.details["previous_sequence"] == 1
    latest = latest_checkpoint(settings.audit_checkpoint_path, signer)
    assert latest is not None
    assert latest.time == frozen_clock.now()


async def test_the_leader_runs_the_duty(trail_db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    scheduler = Scheduler(LeaderElector(trail_db, lease_seconds=30))
    periodic_registration()(scheduler, settings)
    assert {"audit-checkpoint", "audit-retention"} <= set(scheduler.tasks)
    ran = await scheduler.tick()
    await scheduler.elector.release()
    assert "audit-checkpoint" in ran
    assert "audit-retention" in ran
    assert len(list(iter_checkpoint_files(settings.audit_checkpoint_path))) == 1
    assert AuditAction.CHECKPOINT_WRITTEN.value in await _actions(trail_db)


async def test_the_watch_reverifies_only_new_events_and_raises_the_gauge(
    committing_trail_db: Database, tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    from aayu_accounts.audit.tasks import ChainWatch
    from tests.audit.conftest import drop_triggers
    from tests.audit.helpers import execute

    watch = ChainWatch(_settings(tmp_path), KeyringCheckpointSigner())
    await seed(committing_trail_db, 4)
    first = await watch.run(committing_trail_db)
    assert first.ok
    assert (first.checked, watch.verified_through) == (4, 4)
    await seed(committing_trail_db, 2)
    second = await watch.run(committing_trail_db)
    assert (second.first_sequence, second.checked, watch.verified_through) == (5, 2, 6)
    assert REGISTRY.get_sample_value("aayu_audit_chain_broken") == 0
    await drop_triggers(committing_trail_db.engine)
    await seed(committing_trail_db, 1)
    await execute(committing_trail_db, "UPDATE audit_events SET actor_id = 'x' WHERE sequence = 7")
    broken = await watch.run(committing_trail_db)
    assert broken.problem is not None
    assert broken.problem.sequence == 7
    assert REGISTRY.get_sample_value("aayu_audit_chain_broken") == 1
    assert watch.verified_through == 6
