"""Deferred mode: a unit of work's events reach the intake in one statement, with its commit.

Counted with a ``before_cursor_execute`` listener on the real engine: five events recorded in
one unit of work are one INSERT (an executemany) sent at commit, none before it; a rollback
sends none. Savepoints keep their meaning: events recorded in a savepoint that rolls back are
dropped, the others kept, in the order they were recorded. The chain verifies afterwards on
both databases (on SQLite, where appends are inline, the same units of work give the same
chain).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from aayu_accounts.audit import Actor, AuditAction, intake, record
from aayu_accounts.audit.linker import link_all, linker_for, pending_count
from aayu_accounts.audit.service import configure_append_mode
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.helpers import verify


@pytest.fixture
def deferred() -> Iterator[None]:
    # On SQLite the mode does not apply (appends stay inline): the same tests check the chain.
    previous = configure_append_mode("deferred")
    try:
        yield
    finally:
        configure_append_mode(previous)


@contextmanager
def intake_inserts(engine: AsyncEngine) -> Iterator[list[bool]]:
    """Each INSERT into audit_intake sent while inside: whether it was an executemany."""
    sent: list[bool] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_INTAKE"):
            sent.append(many)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def _record(session: AsyncSession, name: str) -> None:
    await record(session, AuditAction.FLAG_UPDATED, actor=Actor.system(), target_id=name)


async def _settle(db: Database, backend: str) -> None:
    if backend == "postgresql":
        await linker_for(db.engine).idle()
        await link_all(db)


async def _chain(db: Database) -> list[str | None]:
    async with db.session_scope(write=False) as session:
        if await pending_count(session):
            raise AssertionError("events left unlinked")
        return list(
            await session.scalars(select(AuditEvent.target_id).order_by(AuditEvent.sequence))
        )


@pytest.mark.usefixtures("deferred")
async def test_a_unit_of_works_events_are_one_insert_sent_at_commit(
    committing_trail_db: Database, backend: str
) -> None:
    db = committing_trail_db
    with intake_inserts(db.engine) as sent:
        async with db.session_scope() as session:
            for number in range(5):
                await _record(session, f"e{number}")
            before_commit = list(sent)
            waiting = intake.buffered(session)
    await _settle(db, backend)
    if backend == "postgresql":
        assert before_commit == []
        assert waiting == 5
        assert sent == [True]  # one statement, an executemany of the five rows
    else:
        assert sent == []  # SQLite appends inline, no intake
    assert await _chain(db) == [f"e{number}" for number in range(5)]
    report = await verify(db)
    assert report.ok, report.problem
    assert report.checked == 5


@pytest.mark.usefixtures("deferred")
async def test_a_rolled_back_unit_of_work_sends_nothing(
    committing_trail_db: Database, backend: str
) -> None:
    db = committing_trail_db

    class Refused(Exception):
        pass

    with intake_inserts(db.engine) as sent, pytest.raises(Refused):
        async with db.session_scope() as session:
            for number in range(3):
                await _record(session, f"gone{number}")
            raise Refused
    async with db.session_scope() as session:
        await _record(session, "kept")
    await _settle(db, backend)
    assert sent == []
    assert await _chain(db) == ["kept"]


@pytest.mark.usefixtures("deferred")
async def test_savepoints_that_roll_back_drop_their_events_and_order_is_kept(
    committing_trail_db: Database, backend: str
) -> None:
    db = committing_trail_db

    class Undo(Exception):
        pass

    with intake_inserts(db.engine) as sent:
        async with db.session_scope() as session:
            await _record(session, "a")
            async with session.begin_nested():
                await _record(session, "b")  # released: kept
            with pytest.raises(Undo):
                async with session.begin_nested():
                    await _record(session, "c")
                    raise Undo
            with pytest.raises(Undo):
                async with session.begin_nested():
                    await _record(session, "d")
                    async with session.begin_nested():
                        await _record(session, "e")  # released into d's savepoint: dropped too
                    raise Undo
            await _record(session, "f")
    await _settle(db, backend)
    assert await _chain(db) == ["a", "b", "f"]
    if backend == "postgresql":
        assert sent == [True]
    report = await verify(db)
    assert report.ok, report.problem


@pytest.mark.usefixtures("deferred")
async def test_buffered_and_inline_appends_in_one_unit_of_work_make_one_chain(
    committing_trail_db: Database, backend: str
) -> None:
    db = committing_trail_db
    with intake_inserts(db.engine) as sent:
        for unit in range(3):
            async with db.session_scope() as session:
                await _record(session, f"{unit}-1")
                await _record(session, f"{unit}-2")
                # An inline append writes the buffered events first (two rows, one statement).
                await record(
                    session,
                    AuditAction.FLAG_UPDATED,
                    actor=Actor.system(),
                    target_id=f"{unit}-inline",
                    link_now=True,
                )
                await _record(session, f"{unit}-3")
    await _settle(db, backend)
    chain = await _chain(db)
    assert sorted(chain, key=str) == sorted(
        (f"{u}-{n}" for u in range(3) for n in ("1", "2", "3", "inline")), key=str
    )
    if backend == "postgresql":
        assert sent == [True, False] * 3  # before the inline append, then at commit
    else:
        assert chain == [f"{u}-{n}" for u in range(3) for n in ("1", "2", "inline", "3")]
    report = await verify(db)
    assert report.ok, report.problem
    assert report.checked == 12
