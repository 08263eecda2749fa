"""Every query on the audit tables.

The chain lock: on PostgreSQL a transaction-level advisory lock, taken before the chain head is
read and released by COMMIT/ROLLBACK, so two transactions can never read the same head and fork
the chain. It must be a separate statement from the read: under READ COMMITTED each statement
takes its snapshot when it starts, so the read after the lock sees the previous holder's commit.
(The trail therefore needs READ COMMITTED, PostgreSQL's default.) On SQLite every write
transaction is ``BEGIN IMMEDIATE`` (db.py), which already serializes writers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    LargeBinary,
    Select,
    SmallInteger,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aayu_accounts.audit.chain import GENESIS_HASH, link
from aayu_accounts.models.audit_archive_permit import AuditArchivePermit
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.base import UTCDateTime

# An arbitrary constant, fixed forever: every writer of every version must use the same key.
CHAIN_LOCK_KEY = 0x6161_7975_6175_6474  # b"aayuaudt"; also in the migration's function


@dataclass(frozen=True)
class ChainHead:
    sequence: int
    hash: str


async def lock_chain(session: AsyncSession) -> None:
    """Serialize appends until this transaction ends (no-op on SQLite; see module doc)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})


@dataclass(frozen=True)
class Appended:
    sequence: int
    prev_hash: str
    hash: str


_APPEND = text(
    "SELECT new_sequence, new_prev_hash, new_hash FROM audit_chain_append("
    ":id, :occurred_at, :actor_kind, :actor_id, :org_id, :action, :target_type, :target_id, "
    ":outcome, :ip, :user_agent, :request_id, :details, :hash_version, :leaf)"
).bindparams(
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("details", type_=JSON()),
    bindparam("hash_version", type_=SmallInteger()),
    bindparam("leaf", type_=LargeBinary()),
)


async def append(session: AsyncSession, values: dict[str, Any], leaf: bytes) -> Appended:
    """Append one event under the chain lock; ``values`` are the columns but the chain's.

    PostgreSQL: one round trip to the migration's ``audit_chain_append`` (lock, head, link,
    insert). SQLite: the write transaction already holds the database lock; read, link, insert.
    """
    if session.get_bind().dialect.name == "postgresql":
        row = (await session.execute(_APPEND, {**values, "leaf": leaf})).one()
        return Appended(int(row.new_sequence), str(row.new_prev_hash), str(row.new_hash))
    return await append_holding_lock(session, values, leaf)


_ENQUEUE = text(
    "INSERT INTO audit_intake (id, occurred_at, actor_kind, actor_id, org_id, action, "
    "target_type, target_id, outcome, ip, user_agent, request_id, details, hash_version, leaf) "
    "VALUES (:id, :occurred_at, :actor_kind, :actor_id, :org_id, :action, :target_type, "
    ":target_id, :outcome, :ip, :user_agent, :request_id, :details, :hash_version, :leaf)"
).bindparams(
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("details", type_=JSON()),
    bindparam("hash_version", type_=SmallInteger()),
    bindparam("leaf", type_=LargeBinary()),
)


async def enqueue(session: AsyncSession, values: dict[str, Any], leaf: bytes) -> None:
    """Deferred mode: write the event to the intake, no lock; linked after commit."""
    await session.execute(_ENQUEUE, {**values, "leaf": leaf})


async def enqueue_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Deferred mode: write events (their columns and ``leaf``) to the intake, in order, in
    one statement (an executemany: asyncpg pipelines it in one round trip)."""
    await session.execute(_ENQUEUE, rows[0] if len(rows) == 1 else rows)


def enqueue_many_sync(session: Session, rows: list[dict[str, Any]]) -> None:
    """:func:`enqueue_many` from a synchronous session event (inside the async session's
    greenlet, e.g. ``before_commit``)."""
    session.execute(_ENQUEUE, rows[0] if len(rows) == 1 else rows)


async def append_holding_lock(
    session: AsyncSession, values: dict[str, Any], leaf: bytes
) -> Appended:
    """Read the head, link, insert: only correct while appends are serialized (SQLite's write
    transaction, or the chain lock already held)."""
    head = await chain_head(session)
    sequence = head.sequence + 1 if head else 1
    previous = head.hash if head else GENESIS_HASH
    linked = link(previous, leaf)
    await session.execute(
        insert(AuditEvent).values(**values, sequence=sequence, prev_hash=previous, hash=linked)
    )
    return Appended(sequence, previous, linked)


async def chain_head(session: AsyncSession) -> ChainHead | None:
    row = (
        await session.execute(
            select(AuditEvent.sequence, AuditEvent.hash)
            .order_by(AuditEvent.sequence.desc())
            .limit(1)
        )
    ).first()
    return ChainHead(row.sequence, row.hash) if row else None


async def first_sequence(session: AsyncSession) -> int | None:
    value = await session.scalar(select(func.min(AuditEvent.sequence)))
    return int(value) if value is not None else None


async def event_at(session: AsyncSession, sequence: int) -> AuditEvent | None:
    result = await session.scalars(select(AuditEvent).where(AuditEvent.sequence == sequence))
    return result.first()


async def iter_chain(
    session: AsyncSession, *, from_sequence: int | None = None, batch: int = 1000
) -> AsyncIterator[AuditEvent]:
    """Every event in sequence order, read in keyset batches (never the whole table at once)."""
    after = (from_sequence - 1) if from_sequence is not None else None
    while True:
        query = select(AuditEvent).order_by(AuditEvent.sequence).limit(batch)
        if after is not None:
            query = query.where(AuditEvent.sequence > after)
        rows = (await session.scalars(query)).all()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].sequence
        session.expunge_all()


@dataclass(frozen=True)
class EventFilter:
    org_id: str | None = None  # None only for platform-wide reads
    action: str | None = None
    actor_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    before_sequence: int | None = None  # the cursor: newest first, strictly older than this


def _filtered(criteria: EventFilter) -> Select[AuditEvent]:
    query = select(AuditEvent)
    if criteria.org_id is not None:
        query = query.where(AuditEvent.org_id == criteria.org_id)
    if criteria.action is not None:
        query = query.where(AuditEvent.action == criteria.action)
    if criteria.actor_id is not None:
        query = query.where(AuditEvent.actor_id == criteria.actor_id)
    if criteria.since is not None:
        query = query.where(AuditEvent.occurred_at >= criteria.since)
    if criteria.until is not None:
        query = query.where(AuditEvent.occurred_at < criteria.until)
    if criteria.outcome is not None:
        query = query.where(AuditEvent.outcome == criteria.outcome)
    if criteria.before_sequence is not None:
        query = query.where(AuditEvent.sequence < criteria.before_sequence)
    return query


async def occurrence_times(
    session: AsyncSession, *, action: str, since: datetime, until: datetime
) -> Sequence[datetime]:
    """When each ``action`` event in [since, until) occurred (every clinic): one column only."""
    query = select(AuditEvent.occurred_at).where(
        AuditEvent.action == action,
        AuditEvent.occurred_at >= since,
        AuditEvent.occurred_at < until,
    )
    return (await session.scalars(query)).all()


async def list_events(
    session: AsyncSession, criteria: EventFilter, *, limit: int
) -> Sequence[AuditEvent]:
    query = _filtered(criteria).order_by(AuditEvent.sequence.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def list_events_ascending(
    session: AsyncSession, criteria: EventFilter, *, after_sequence: int, limit: int
) -> Sequence[AuditEvent]:
    query = (
        _filtered(criteria)
        .where(AuditEvent.sequence > after_sequence)
        .order_by(AuditEvent.sequence)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def count_events(
    session: AsyncSession,
    *,
    action: str,
    actor_id: str,
    since: datetime,
) -> int:
    query = select(func.count()).where(
        AuditEvent.action == action,
        AuditEvent.actor_id == actor_id,
        AuditEvent.occurred_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def oldest_events(session: AsyncSession, *, limit: int) -> Sequence[AuditEvent]:
    """The first events of the chain, in order."""
    query = select(AuditEvent).order_by(AuditEvent.sequence).limit(limit)
    return (await session.scalars(query)).all()


async def delete_through(session: AsyncSession, through_sequence: int) -> int:
    """Delete events up to a sequence: the archival job's path, the only one triggers allow."""
    permit = AuditArchivePermit(through_sequence=through_sequence)
    session.add(permit)
    await session.flush()
    result = await session.execute(
        delete(AuditEvent).where(AuditEvent.sequence <= through_sequence)
    )
    await session.execute(delete(AuditArchivePermit).where(AuditArchivePermit.id == permit.id))
    session.expunge(permit)
    return int(getattr(result, "rowcount", 0) or 0)
