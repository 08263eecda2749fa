"""An intruder with database access drops the triggers and tampers; the verifier names it.

Runs on SQLite and PostgreSQL, each on a trail of its own (tests/audit/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.chain import EventFields, event_hash
from aayu_accounts.audit.checkpoint import (
    Checkpoint,
    KeyringCheckpointSigner,
    make_checkpoint,
    write_checkpoint_file,
)
from aayu_accounts.audit.service import RecordedEvent
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.ids import new_id
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.conftest import drop_triggers
from tests.audit.helpers import execute, rehash_from, seed, verify

EVENTS = 10


async def _tamperable(db: Database) -> list[RecordedEvent]:
    events = await seed(db, EVENTS)
    report = await verify(db)
    assert report.ok, report.problem
    assert (report.checked, report.first_sequence, report.last_sequence) == (EVENTS, 1, EVENTS)
    assert report.head_hash == events[-1].hash
    await drop_triggers(db.engine)
    return events


async def test_untouched_trail_verifies(committing_trail_db: Database) -> None:
    await seed(committing_trail_db, EVENTS)
    report = await verify(committing_trail_db)
    assert report.ok
    assert report.checked == EVENTS
    partial = await verify(committing_trail_db, from_sequence=6)
    assert partial.ok
    assert (partial.first_sequence, partial.checked) == (6, 5)


async def test_edited_event_is_named(committing_trail_db: Database) -> None:
    await _tamperable(committing_trail_db)
    await execute(
        committing_trail_db, "UPDATE audit_events SET actor_id = 'intruder' WHERE sequence = 4"
    )
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("modified", 4)
    assert report.checked == 3


async def test_edited_details_are_named(committing_trail_db: Database) -> None:
    await _tamperable(committing_trail_db)
    async with committing_trail_db.session_scope() as session:
        row = (await session.scalars(select(AuditEvent).where(AuditEvent.sequence == 7))).one()
        row.details = {**row.details, "new": {"n": 999}}
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("modified", 7)


async def test_deleted_event_is_named(committing_trail_db: Database) -> None:
    await _tamperable(committing_trail_db)
    await execute(committing_trail_db, "DELETE FROM audit_events WHERE sequence = 6")
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("removed", 6)


async def test_deleted_first_event_is_named(committing_trail_db: Database) -> None:
    await _tamperable(committing_trail_db)
    await execute(committing_trail_db, "DELETE FROM audit_events WHERE sequence = 1")
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("removed", 1)


async def test_reordered_events_are_named(committing_trail_db: Database) -> None:
    await _tamperable(committing_trail_db)
    for sql in (
        "UPDATE audit_events SET sequence = -1 WHERE sequence = 3",
        "UPDATE audit_events SET sequence = 3 WHERE sequence = 4",
        "UPDATE audit_events SET sequence = 4 WHERE sequence = -1",
    ):
        await execute(committing_trail_db, sql)
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("reordered", 3)


async def test_inserted_event_is_named(committing_trail_db: Database) -> None:
    """The intruder makes room at 5, inserts a forged event with a correct hash and link."""
    events = await _tamperable(committing_trail_db)
    await execute(
        committing_trail_db,
        "UPDATE audit_events SET sequence = sequence + 1000 WHERE sequence >= 5",
    )
    await execute(
        committing_trail_db,
        "UPDATE audit_events SET sequence = sequence - 999 WHERE sequence >= 1000",
    )
    async with committing_trail_db.session_scope() as session:
        forged = AuditEvent(
            id=new_id(),
            sequence=5,
            occurred_at=events[3].occurred_at,
            actor_kind="user",
            actor_id="user-0",
            org_id="org-a",
            action=AuditAction.MEMBER_ROLE_CHANGED.value,
            target_type="membership",
            target_id="intruder",
            outcome="success",
            details={"new": {"role": "owner"}},
            hash_version=1,
            prev_hash=events[3].hash,
        )
        forged.hash = event_hash(forged.prev_hash, EventFields.of(forged))
        session.add(forged)
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("inserted", 5)


async def test_naively_inserted_event_is_named(committing_trail_db: Database) -> None:
    """A forged event appended with a made-up link and hash."""
    await _tamperable(committing_trail_db)
    async with committing_trail_db.session_scope() as session:
        session.add(
            AuditEvent(
                id=new_id(),
                sequence=EVENTS + 1,
                occurred_at=clock.now(),
                actor_kind="system",
                actor_id="system",
                action=AuditAction.FLAG_UPDATED.value,
                outcome="success",
                details={},
                hash_version=1,
                prev_hash="ab" * 32,
                hash="cd" * 32,
            )
        )
    report = await verify(committing_trail_db)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("inserted", EVENTS + 1)


# -- what only checkpoints can show ----------------------------------------------------------


def _checkpoint_at(directory: Path, event: RecordedEvent) -> Checkpoint:
    assert event.sequence is not None  # appended inline
    assert event.hash is not None
    checkpoint = make_checkpoint(KeyringCheckpointSigner(), event.sequence, event.hash, clock.now())
    write_checkpoint_file(directory, checkpoint)
    return checkpoint


async def test_cut_tail_is_caught_by_a_checkpoint(
    committing_trail_db: Database, tmp_path: Path
) -> None:
    events = await _tamperable(committing_trail_db)
    _checkpoint_at(tmp_path, events[-1])
    signer = KeyringCheckpointSigner()
    assert (await verify(committing_trail_db, checkpoint_dir=tmp_path, signer=signer)).ok
    await execute(committing_trail_db, "DELETE FROM audit_events WHERE sequence >= 9")
    # The bare chain is still consistent: only the checkpoint shows what is missing.
    assert (await verify(committing_trail_db)).ok
    report = await verify(committing_trail_db, checkpoint_dir=tmp_path, signer=signer)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("removed", 9)


async def test_rewritten_chain_is_caught_by_a_checkpoint(
    committing_trail_db: Database, tmp_path: Path
) -> None:
    events = await _tamperable(committing_trail_db)
    _checkpoint_at(tmp_path, events[7])
    async with committing_trail_db.session_scope() as session:
        row = (await session.scalars(select(AuditEvent).where(AuditEvent.sequence == 3))).one()
        row.actor_id = "someone-else"
        await session.flush()
        await rehash_from(session, 3)
    assert (await verify(committing_trail_db)).ok  # a careful intruder fools the bare chain
    report = await verify(
        committing_trail_db, checkpoint_dir=tmp_path, signer=KeyringCheckpointSigner()
    )
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("modified", 8)
    assert report.checkpoints_checked == 1


async def test_forged_checkpoint_is_refused(committing_trail_db: Database, tmp_path: Path) -> None:
    events = await _tamperable(committing_trail_db)
    real = _checkpoint_at(tmp_path, events[-1])
    forged = Checkpoint(real.sequence + 5, "ee" * 32, real.time, real.key_id, b"\x00" * 32)
    write_checkpoint_file(tmp_path, forged)
    report = await verify(
        committing_trail_db, checkpoint_dir=tmp_path, signer=KeyringCheckpointSigner()
    )
    assert report.problem is not None
    assert report.problem.kind == "checkpoint_invalid"


@pytest.mark.parametrize("statement", ["UPDATE", "DELETE"])
async def test_triggers_refuse_changes_until_dropped(
    committing_trail_db: Database, statement: str
) -> None:
    await seed(committing_trail_db, 2)
    sql = (
        "UPDATE audit_events SET actor_id = 'x' WHERE sequence = 1"
        if statement == "UPDATE"
        else "DELETE FROM audit_events WHERE sequence = 1"
    )
    with pytest.raises(Exception, match="append-only"):
        await execute(committing_trail_db, sql)
    assert (await verify(committing_trail_db)).ok
    async with committing_trail_db.session_scope() as session:
        await record(session, AuditAction.ORG_UPDATED, actor=Actor.system())
    assert (await verify(committing_trail_db)).checked == 3


async def test_batches_do_not_hide_a_break_at_their_boundary(
    committing_trail_db: Database,
) -> None:
    await _tamperable(committing_trail_db)
    assert (await verify(committing_trail_db, batch=3)).checked == EVENTS
    await execute(committing_trail_db, "DELETE FROM audit_events WHERE sequence = 4")
    report = await verify(committing_trail_db, batch=3)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.sequence) == ("removed", 4)
    assert report.checked == 3
