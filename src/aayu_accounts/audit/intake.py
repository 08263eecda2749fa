"""The deferred mode's intake writes, buffered per unit of work (PostgreSQL).

``record`` in the deferred mode does not send its event at once: it appends the row to the
session's buffer, and just before the session's transaction commits (SQLAlchemy's
``before_commit``, still inside that transaction) every buffered event goes to
``audit_intake`` in one statement (an executemany, which asyncpg sends as one pipelined round
trip). So a unit of work that records five events pays for one statement instead of five, and
the guarantees stay those of writing at once:

* an action that rolls back leaves no event (the buffer is dropped with the transaction, and
  had it been written it would have been rolled back with it);
* an event is never lost when its action commits (the write is part of the commit: if it
  fails, the commit fails);
* events keep the order in which they were recorded (intake order is the linking order).

An event recorded inside a savepoint (``begin_nested``) is buffered with that savepoint: rolling
the savepoint back drops it (and those of savepoints inside it), as it would have removed the
row. An inline append (``link_now``) first writes what is buffered, so the transaction's events
reach the chain in the order they were recorded.

After the commit the process's linker is kicked (:func:`aayu_accounts.audit.linker.kick`).
The listeners are registered once, on SQLAlchemy's ``Session`` class, and do nothing for a
session that recorded nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from aayu_accounts.audit import repository
from aayu_accounts.audit.linker import linker_for

_BUFFER = "aayu_audit_intake_buffer"
_LINK_ENGINE = "aayu_audit_link_engine"


def buffer(session: AsyncSession, row: dict[str, Any]) -> None:
    """Write ``row`` (the intake's columns, leaf included) with the transaction's commit."""
    sync_session = session.sync_session
    pending: list[tuple[SessionTransaction | None, dict[str, Any]]] | None = sync_session.info.get(
        _BUFFER
    )
    if pending is None:
        pending = sync_session.info[_BUFFER] = []
        link_after_commit(session)
    pending.append((sync_session.get_nested_transaction(), row))


def link_after_commit(session: AsyncSession) -> None:
    """Kick this process's linker when ``session``'s transaction commits.

    A session bound to one connection (tests) has no engine to link with: the leader's sweep,
    or an explicit ``link_all``, links its events."""
    bind = session.bind
    if isinstance(bind, AsyncEngine):
        session.sync_session.info[_LINK_ENGINE] = bind


def buffered(session: AsyncSession) -> int:
    """How many events wait for this session's commit."""
    return len(session.sync_session.info.get(_BUFFER) or ())


async def write_buffered(session: AsyncSession) -> None:
    """Write what is buffered now (before an inline append, to keep the recorded order).

    Only outside savepoints: a buffered event of an enclosing savepoint must stay droppable."""
    pending = session.sync_session.info.pop(_BUFFER, None)
    if pending:
        await repository.enqueue_many(session, [row for _, row in pending])


@event.listens_for(Session, "before_commit")
def _write_on_commit(sync_session: Session) -> None:
    if sync_session.in_nested_transaction():
        return  # a savepoint's release: the outermost commit writes
    pending = sync_session.info.pop(_BUFFER, None)
    if pending:
        # Runs inside AsyncSession.commit's greenlet: the synchronous call is awaited there.
        repository.enqueue_many_sync(sync_session, [row for _, row in pending])


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(sync_session: Session, previous: SessionTransaction) -> None:
    pending = sync_session.info.get(_BUFFER)
    if not pending or not previous.nested:
        return  # the outermost transaction's end drops everything (below)
    sync_session.info[_BUFFER] = [
        (savepoint, row) for savepoint, row in pending if not _within(savepoint, previous)
    ]


def _within(savepoint: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is outer:
            return True
        savepoint = savepoint.parent
    return False


@event.listens_for(Session, "after_commit")
def _kick_linker(sync_session: Session) -> None:
    if sync_session.in_nested_transaction():
        return  # a savepoint was released, nothing is committed yet
    engine = sync_session.info.pop(_LINK_ENGINE, None)
    if engine is not None:
        linker_for(engine).kick()


@event.listens_for(Session, "after_transaction_end")
def _forget(sync_session: Session, transaction: SessionTransaction) -> None:
    # The session's outermost transaction ended: a rollback (or a close) drops the buffer; after
    # a commit it is empty already.
    if transaction.parent is None:
        sync_session.info.pop(_BUFFER, None)
        sync_session.info.pop(_LINK_ENGINE, None)
