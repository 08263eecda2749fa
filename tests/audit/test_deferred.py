"""The deferred append mode (PostgreSQL): events linked right after commit, in batches.

Many concurrent writers still make one unbroken chain; an action that rolls back leaves
nothing; the intake refuses changes; inline and deferred appends share one chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.linker import link_all, linker_for, pending_count
from aayu_accounts.audit.service import configure_append_mode
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.audit_intake import AuditIntake
from tests.audit.helpers import verify

WRITERS = 16
TRANSACTIONS_PER_WRITER = 15


@pytest.fixture
def deferred(backend: str) -> Iterator[None]:
    if backend != "postgresql":
        pytest.skip("the deferred mode is PostgreSQL's (SQLite serializes writers anyway)")
    previous = configure_append_mode("deferred")
    try:
        yield
    finally:
        configure_append_mode(previous)


async def _writer(db: Database, writer: int, *, inline_every: int = 0) -> None:
    for number in range(TRANSACTIONS_PER_WRITER):
        async with db.session_scope() as session:
            event = await record(
                session,
                AuditAction.LOGIN_SUCCEEDED,
                actor=Actor.user(f"writer-{writer}"),
                details={"n": number},
                link_now=bool(inline_every) and number % inline_every == 0,
            )
            if number % 4 == 0:
                await asyncio.sleep(0)
                await record(session, AuditAction.SESSION_CREATED, actor=Actor.user("w"))
    assert event.id


def _expected() -> int:
    return WRITERS * (TRANSACTIONS_PER_WRITER + len(range(0, TRANSACTIONS_PER_WRITER, 4)))


async def _settle(db: Database) -> None:
    """Wait for this process's linker, then link whatever is left (as the leader's sweep)."""
    await linker_for(db.engine).idle()
    await link_all(db)


@pytest.mark.usefixtures("deferred")
async def test_deferred_writers_leave_one_unbroken_chain(committing_trail_db: Database) -> None:
    db = committing_trail_db
    await asyncio.gather(*(_writer(db, w) for w in range(WRITERS)))
    await linker_for(db.engine).idle()
    # The after-commit linker linked every committed event by itself: no sweep was needed.
    async with db.session_scope(write=False) as session:
        assert await pending_count(session) == 0
    report = await verify(db)
    assert report.ok, report.problem
    assert (report.checked, report.first_sequence, report.last_sequence) == (
        _expected(),
        1,
        _expected(),
    )
    async with db.session_scope(write=False) as session:
        distinct_prev = await session.scalar(
            select(func.count(func.distinct(AuditEvent.prev_hash)))
        )
    assert distinct_prev == _expected()  # no two events share a predecessor: no fork


@pytest.mark.usefixtures("deferred")
async def test_inline_and_deferred_appends_share_one_chain(committing_trail_db: Database) -> None:
    db = committing_trail_db
    await asyncio.gather(*(_writer(db, w, inline_every=3) for w in range(WRITERS)))
    await _settle(db)
    report = await verify(db)
    assert report.ok, report.problem
    assert report.checked == _expected()


@pytest.mark.usefixtures("deferred")
async def test_a_rolled_back_action_leaves_nothing_to_link(committing_trail_db: Database) -> None:
    db = committing_trail_db

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with db.session_scope() as session:
            event = await record(session, AuditAction.ORG_CREATED, actor=Actor.system())
            assert event.sequence is None  # linked after commit, not now
            raise Refused
    async with db.session_scope() as session:
        kept = await record(session, AuditAction.ORG_UPDATED, actor=Actor.system())
    await _settle(db)
    async with db.session_scope(write=False) as session:
        actions = list(await session.scalars(select(AuditEvent.action)))
        assert await pending_count(session) == 0
    assert actions == [AuditAction.ORG_UPDATED.value]
    assert kept.id


@pytest.mark.usefixtures("deferred")
async def test_the_intake_refuses_changes_until_linked(trail_db: Database) -> None:
    async with trail_db.session_scope() as session:
        await record(session, AuditAction.ORG_CREATED, actor=Actor.system())
    # A database bound to one connection has no engine to link with: the event waits.
    async with trail_db.session_scope(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(AuditIntake)) == 1
    for statement in (
        "UPDATE audit_intake SET actor_id = 'intruder'",
        "DELETE FROM audit_intake",
        "TRUNCATE audit_intake",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with trail_db.session_scope() as session:
                await session.execute(text(statement))
    assert await link_all(trail_db) == 1
    report = await verify(trail_db)
    assert report.ok, report.problem
    assert report.checked == 1
