"""Many writers at once never fork the chain: appends are serialized until commit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from aayu_accounts.audit import Actor, AuditAction, record, repository
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.helpers import verify

WRITERS = 16
TRANSACTIONS_PER_WRITER = 20


async def _writer(db: Database, writer: int) -> int:
    """Commits TRANSACTIONS_PER_WRITER units of work, some with two events; returns failures."""
    failures = 0
    for number in range(TRANSACTIONS_PER_WRITER):
        try:
            async with db.session_scope() as session:
                await record(
                    session,
                    AuditAction.LOGIN_SUCCEEDED,
                    actor=Actor.user(f"writer-{writer}"),
                    details={"n": number},
                )
                if number % 4 == 0:
                    await asyncio.sleep(0)  # let others run while the lock is held
                    await record(session, AuditAction.SESSION_CREATED, actor=Actor.user("w"))
        except IntegrityError:
            failures += 1
    return failures


def _expected_events() -> int:
    per_writer = TRANSACTIONS_PER_WRITER + len(range(0, TRANSACTIONS_PER_WRITER, 4))
    return WRITERS * per_writer


async def test_concurrent_writers_leave_one_unbroken_chain(committing_trail_db: Database) -> None:
    failures = await asyncio.gather(*(_writer(committing_trail_db, w) for w in range(WRITERS)))
    assert sum(failures) == 0
    report = await verify(committing_trail_db)
    assert report.ok, report.problem
    assert report.checked == _expected_events()
    assert (report.first_sequence, report.last_sequence) == (1, _expected_events())
    async with committing_trail_db.session_scope(write=False) as session:
        distinct_prev = await session.scalar(
            select(func.count(func.distinct(AuditEvent.prev_hash)))
        )
    assert distinct_prev == _expected_events()  # no two events share a predecessor: no fork


async def test_without_the_lock_writers_collide(
    committing_trail_db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same load with the lock removed forks (refused by the unique sequence),
    so the test above passes because of the lock, not by luck."""
    if backend != "postgresql":
        pytest.skip("SQLite serializes writers with BEGIN IMMEDIATE; there is no lock to remove")

    monkeypatch.setattr(repository, "append", repository.append_holding_lock)
    failures = await asyncio.gather(*(_writer(committing_trail_db, w) for w in range(WRITERS)))
    assert sum(failures) > 0
