"""Deferred linking of the hash chain (``AAYU_AUDIT_APPEND_MODE=deferred``, PostgreSQL).

Inline, an event is linked in its own transaction under the chain lock, and PostgreSQL holds
that lock until the commit's WAL flush is done: commits of audited actions take turns, one
flush each, and group commit cannot happen. Deferred, ``record`` writes the event and its leaf
hash to ``audit_intake`` in the caller's transaction without any lock; when that transaction
commits, this process's linker runs ``audit_chain_link`` in a transaction of its own, which
moves every committed intake row into ``audit_events`` under the lock, linked to the head. The
actions' commits share flushes again, and one linking transaction (one flush) links a batch.

What stays: an event exists exactly when its action committed (the intake row is in the same
transaction); the chain has one order, one unbroken set of links and gap-free numbers (the
linker is serialized by the same lock as inline appends, so both modes can run side by side);
the verifier and the checkpoints see only linked events, as before. What changes: for the few
milliseconds between a commit and its linking, an event sits in the intake, protected only by
its triggers, so an intruder who can drop them could remove it unseen; and a reader sees it
only once linked. The leader sweeps the intake every few seconds for events whose process died
between commit and linking.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from aayu_accounts.db import Database
from aayu_accounts.models.audit_intake import AuditIntake

log = structlog.get_logger(__name__)

LINK_BATCH = 1000
RETRIES = 3
RETRY_DELAY_SECONDS = 0.5
_LINK = text("SELECT audit_chain_link(:limit)")


async def link_pending(session: AsyncSession, *, limit: int = LINK_BATCH) -> int:
    """Link up to ``limit`` committed intake events into the chain (in the caller's
    transaction, which holds the chain lock until it ends); returns how many."""
    return int(await session.scalar(_LINK, {"limit": limit}) or 0)


async def pending_count(session: AsyncSession) -> int:
    if session.get_bind().dialect.name != "postgresql":
        return 0
    return int(await session.scalar(select(func.count()).select_from(AuditIntake)) or 0)


async def link_all(db: Database) -> int:
    """Link every committed intake event, batch by batch (the leader's sweep, tests, bench)."""
    total = 0
    while True:
        async with db.session_scope() as session:
            linked = await link_pending(session)
        total += linked
        if linked < LINK_BATCH:
            return total


async def link_all_autocommit(engine: AsyncEngine) -> int:
    """:func:`link_all` for this process's linker: each batch is one autocommit statement.

    ``audit_chain_link`` takes the chain lock, links and deletes in the one transaction of its
    statement (the lock is released when that statement commits), so a batch costs one round
    trip instead of BEGIN, statement and COMMIT."""
    total = 0
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        while True:
            linked = int(await connection.scalar(_LINK, {"limit": LINK_BATCH}) or 0)
            total += linked
            if linked < LINK_BATCH:
                return total


class Linker:
    """One per engine and process: coalesces after-commit kicks into linking passes.

    A kick during a pass asks for one more pass, so an event committed while a pass runs is
    never left behind (the pass's snapshot may predate its commit).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.linked = 0

    def kick(self) -> None:
        self._wanted.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="aayu-audit-linker"
            )

    async def _drain(self) -> None:
        failures = 0
        while self._wanted.is_set():
            self._wanted.clear()
            try:
                self.linked += await link_all_autocommit(self.engine)
                failures = 0
            except Exception as exc:
                # Typically the pool was exhausted or the database is away: try again shortly,
                # a few times; after that the leader's sweep links what is left.
                failures += 1
                log.warning("audit.link_failed", error_type=type(exc).__name__, attempt=failures)
                if failures >= RETRIES:
                    return
                self._wanted.set()
                await asyncio.sleep(RETRY_DELAY_SECONDS)

    async def idle(self) -> None:
        """Wait until no pass is running or wanted (tests and the benchmark)."""
        while self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)


_linkers: weakref.WeakKeyDictionary[Any, Linker] = weakref.WeakKeyDictionary()


def linker_for(engine: AsyncEngine) -> Linker:
    found = _linkers.get(engine.sync_engine)
    if found is None:
        found = _linkers[engine.sync_engine] = Linker(engine)
    return found
