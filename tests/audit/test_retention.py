"""Retention: never below six years; archived to signed JSONL that verifies alone; then deleted."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.archive import (
    ChainBrokenRefusingToArchive,
    archive_expired,
    verify_archive,
)
from aayu_accounts.audit.checkpoint import KeyringCheckpointSigner
from aayu_accounts.config import AUDIT_MIN_RETENTION_DAYS, Settings
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.conftest import drop_triggers
from tests.audit.helpers import execute, seed, verify
from tests.fixtures.database import make_settings

SEVEN_YEARS = timedelta(days=7 * 365)


def _settings(tmp_path: Path) -> Settings:
    return make_settings(
        "sqlite+aiosqlite:///unused.db", tmp_path, audit_archive_dir=tmp_path / "archive"
    )


def test_retention_is_never_below_six_years(tmp_path: Path) -> None:
    assert AUDIT_MIN_RETENTION_DAYS == 2190
    assert _settings(tmp_path).audit_retention_days == 2190
    with pytest.raises(ValidationError, match="six years"):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, audit_retention_days=2189)
    longer = make_settings("sqlite+aiosqlite:///x.db", tmp_path, audit_retention_days=3650)
    assert longer.audit_retention_days == 3650


async def _count(db: Database) -> int:
    async with db.session_scope(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_old_events_are_archived_then_deleted(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = _settings(tmp_path)
    signer = KeyringCheckpointSigner()
    now = frozen_clock.now()
    frozen_clock.set(now - SEVEN_YEARS)
    old = await seed(trail_db, 5)
    frozen_clock.set(now - timedelta(days=AUDIT_MIN_RETENTION_DAYS - 1))  # just inside
    kept = await seed(trail_db, 2)
    frozen_clock.set(now)
    await seed(trail_db, 1)

    files = await archive_expired(trail_db, settings, signer)

    assert len(files) == 1
    assert files[0].parent == settings.audit_archive_path
    archived = verify_archive(files[0], signer)
    assert archived.ok, archived.problem
    assert (archived.count, archived.first_sequence, archived.last_sequence) == (5, 1, 5)
    assert archived.last_hash == old[-1].hash
    assert await _count(trail_db) == 2 + 1 + 1  # kept, recent, and the archival event
    async with trail_db.session_scope(write=False) as session:
        first = await session.scalar(select(func.min(AuditEvent.sequence)))
        marker = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == AuditAction.EVENTS_ARCHIVED.value)
            )
        ).one()
        assert marker.details["through_sequence"] == 5
        assert marker.details["last_hash"] == old[-1].hash
        assert marker.target_id == files[0].name
    assert first == kept[0].sequence
    report = await verify(trail_db)
    assert report.ok, report.problem
    assert report.first_sequence == 6
    # Nothing more to archive: a second run writes nothing.
    assert await archive_expired(trail_db, settings, signer) == []


async def test_batches_make_several_files(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = _settings(tmp_path)
    now = frozen_clock.now()
    frozen_clock.set(now - SEVEN_YEARS)
    await seed(trail_db, 7)
    frozen_clock.set(now)
    files = await archive_expired(trail_db, settings, KeyringCheckpointSigner(), batch=3)
    assert [f.name for f in files] == [
        "audit-archive-000000000000001-000000000000003.jsonl",
        "audit-archive-000000000000004-000000000000006.jsonl",
        "audit-archive-000000000000007-000000000000007.jsonl",
    ]
    assert all(verify_archive(f, KeyringCheckpointSigner()).ok for f in files)
    assert (await verify(trail_db)).ok


async def test_a_tampered_archive_does_not_verify(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = _settings(tmp_path)
    signer = KeyringCheckpointSigner()
    now = frozen_clock.now()
    frozen_clock.set(now - SEVEN_YEARS)
    await seed(trail_db, 3)
    frozen_clock.set(now)
    [path] = await archive_expired(trail_db, settings, signer)
    lines = path.read_text().splitlines()
    event = json.loads(lines[2])
    event["actor_id"] = "someone-else"
    lines[2] = json.dumps(event, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    assert not verify_archive(path, signer).ok
    path.write_text("\n".join(lines[:-1]) + "\n")  # the signature line cut off
    assert not verify_archive(path, signer).ok


async def test_a_broken_stretch_is_not_archived(
    committing_trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = _settings(tmp_path)
    now = frozen_clock.now()
    frozen_clock.set(now - SEVEN_YEARS)
    await seed(committing_trail_db, 4)
    frozen_clock.set(now)
    await drop_triggers(committing_trail_db.engine)
    await execute(
        committing_trail_db, "UPDATE audit_events SET actor_id = 'intruder' WHERE sequence = 2"
    )
    with pytest.raises(ChainBrokenRefusingToArchive):
        await archive_expired(committing_trail_db, settings, KeyringCheckpointSigner())
    assert await _count(committing_trail_db) == 4
    assert not settings.audit_archive_path.exists() or not any(
        settings.audit_archive_path.iterdir()
    )
