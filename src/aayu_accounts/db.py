"""Engines, session factories and the transaction edge.

Rule 1 of DESIGN.md lives here: only the edge commits. A request gets a session from the
``WriteSession``/``ReadSession`` dependencies, which commit (or roll back on error) after the
endpoint returns and *before* the response is sent; CLI commands and jobs use
:meth:`Database.session_scope`. Services only ``flush()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import StaticPool

from aayu_accounts.config import Settings

T = TypeVar("T")

log = structlog.get_logger(__name__)

JOBS_ENQUEUED = "aayu_jobs_enqueued"

StatementObserver = Callable[[float], None]


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine with the strategy's pool settings (PostgreSQL) or WAL SQLite."""
    target = make_url(url or settings.database_url)
    if target.get_backend_name() == "sqlite":
        _prepare_sqlite_file(target)
        in_memory = target.database in (None, "", ":memory:")
        engine = create_async_engine(
            target,
            poolclass=StaticPool if in_memory else None,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
        )
        _configure_sqlite(engine, settings)
    else:
        engine = create_async_engine(
            target,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_connect_timeout_seconds * 2,
            pool_recycle=settings.db_pool_recycle_seconds,
            pool_pre_ping=True,
            connect_args={
                "timeout": settings.db_connect_timeout_seconds,
                "command_timeout": settings.db_statement_timeout_seconds,
                "server_settings": {
                    "application_name": "aayu-accounts",
                    "statement_timeout": str(int(settings.db_statement_timeout_seconds * 1000)),
                },
            },
        )
        _ping_in_one_round_trip(engine)
    _install_slow_statement_log(engine, settings.db_slow_statement_seconds)
    return engine


def _ping_in_one_round_trip(engine: AsyncEngine) -> None:
    """Keep ``pool_pre_ping``, at one round trip per checkout instead of three.

    SQLAlchemy's asyncpg adapter pings a connection that is not in a transaction with BEGIN,
    an empty query and ROLLBACK (so that PgBouncer's transaction mode keeps them on one server,
    sqlalchemy#10226): three round trips before every unit of work. The application connects to
    PostgreSQL itself, so the ping is the empty query alone, sent the way the adapter sends it
    on an autocommit connection; a failure is translated and handled as before (a dead
    connection is replaced). Behind PgBouncer in transaction mode, drop this.
    """
    dialect = engine.sync_engine.dialect
    if dialect.driver != "asyncpg":
        return

    def do_ping(dbapi_connection: Any) -> bool:
        level = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = "autocommit"
        try:
            dbapi_connection.ping()
        finally:
            dbapi_connection.isolation_level = level
        return True

    dialect.do_ping = do_ping  # type: ignore[method-assign]


# Read-only units of work on PostgreSQL run in autocommit: under read committed (the server's
# default, never changed here) every statement of a transaction takes its own snapshot anyway
# and a SELECT takes no lock that must last, so a read-only transaction adds nothing but its
# BEGIN and ROLLBACK, two round trips (a wake-up of the server each) per request.
_AUTOCOMMIT: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}


def read_only_options(session: AsyncSession) -> dict[str, Any]:
    """Execution options for a unit of work that will only read, on ``session``'s database.

    Autocommit on a PostgreSQL engine; nothing on SQLite (its readers begin ``DEFERRED``) or
    on a session bound to one connection (tests run inside an outer transaction).
    """
    bind = session.bind
    if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql":
        return _AUTOCOMMIT
    return {}


async def read_before_writing(session: AsyncSession, read: Callable[[], Awaitable[T]]) -> T:
    """Run ``read`` on a write session in a transaction of its own that is over on return.

    For units of work that read, then do something slow (an Argon2id hash), then write: on
    SQLite a write session begins ``IMMEDIATE`` and would hold the one write lock across the
    slow part; here the read begins ``DEFERRED`` (a WAL reader takes no lock) and is rolled
    back at once, and on PostgreSQL one SELECT runs in autocommit (no BEGIN and ROLLBACK
    round trips). The caller's write transaction begins with its first write-side statement.
    When the session already holds changes, its transaction is kept and only the read runs.
    ``read`` must return plain values: ORM objects it loads are expired by the rollback.
    """
    pending = bool(session.new or session.dirty or session.deleted)
    if not pending and not session.in_transaction():
        await session.connection(
            execution_options={"sqlite_begin": "DEFERRED", **read_only_options(session)}
        )
    result = await read()
    if not pending:
        await session.rollback()
    return result


class ReadOnlyWrite(RuntimeError):
    """A write was attempted through a read-only unit of work (a programming error)."""


class ReadOnlySession(Session):
    """The session of ``ReadSession`` and ``session_scope(write=False)``: it refuses to write.

    A read-only unit of work is never committed, and on PostgreSQL it runs in autocommit, where
    a write would take effect at once; so a flush or an INSERT/UPDATE/DELETE through it raises
    before reaching the database instead of being silently kept or silently dropped.
    """


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlyWrite("A read-only unit of work cannot write; use a WriteSession.")


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlyWrite("A read-only unit of work cannot write; use a WriteSession.")


def _configure_sqlite(engine: AsyncEngine, settings: Settings) -> None:
    """WAL, foreign keys, a busy timeout, and transactions SQLite's driver leaves alone.

    pysqlite begins transactions lazily and breaks SAVEPOINTs; the documented SQLAlchemy
    recipe takes transaction control back. Write transactions use ``BEGIN IMMEDIATE`` so two
    writers queue on the busy timeout instead of failing on a lock upgrade.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _install_slow_statement_log(engine: AsyncEngine, threshold_seconds: float) -> None:
    """Log statements slower than the threshold: the SQL text only, never parameter values."""
    observers: list[StatementObserver] = []
    engine.sync_engine.__dict__["_aayu_statement_observers"] = observers

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("statement_started", []).append(time.perf_counter())

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _m: bool) -> None:
        started = conn.info.get("statement_started")
        if not started:
            return
        elapsed = time.perf_counter() - started.pop()
        for observe in observers:
            observe(elapsed)
        if elapsed >= threshold_seconds:
            log.warning(
                "db.slow_statement",
                duration_ms=round(elapsed * 1000, 1),
                statement=" ".join(statement.split())[:500],
            )


def add_statement_observer(engine: AsyncEngine, observer: StatementObserver) -> None:
    observers = engine.sync_engine.__dict__.setdefault("_aayu_statement_observers", [])
    if observer not in observers:
        observers.append(observer)


class Database:
    """Owns the engine and hands out sessions; one per process (app.state.db)."""

    def __init__(self, engine: AsyncEngine | AsyncConnection) -> None:
        self.bind = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._on_jobs_committed: list[Callable[[], None]] = []
        self._session_guards: list[Callable[[], None]] = []
        joined = isinstance(engine, AsyncConnection)
        # Tests bind to one connection inside an outer transaction: commits become savepoints
        # and the whole test rolls back at the end. One connection cannot interleave two
        # tasks' savepoints, so units of work from different tasks (a request and a background
        # monitor) take turns; nested units of work in one task go straight through.
        self._connection_turns = _TaskReentrantLock() if joined else None
        mode: dict[str, Any] = {"join_transaction_mode": "create_savepoint"} if joined else {}
        self._write_factory = async_sessionmaker(
            bind=engine, expire_on_commit=False, autoflush=True, **mode
        )
        read_bind: AsyncEngine | AsyncConnection = engine
        if self._sqlite and isinstance(engine, AsyncEngine):
            # Readers must not take SQLite's write lock.
            read_bind = engine.execution_options(sqlite_begin="DEFERRED")
        elif isinstance(engine, AsyncEngine):
            read_bind = engine.execution_options(**_AUTOCOMMIT)
        self._read_factory = async_sessionmaker(
            bind=read_bind,
            expire_on_commit=False,
            autoflush=False,
            sync_session_class=ReadOnlySession,
            **mode,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings))

    @property
    def dialect(self) -> str:
        return self.bind.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        if isinstance(self.bind, AsyncConnection):
            return self.bind.engine
        return self.bind

    def on_jobs_committed(self, callback: Callable[[], None]) -> None:
        """Called after a commit that enqueued jobs (wakes the in-process worker)."""
        self._on_jobs_committed.append(callback)

    def add_session_guard(self, guard: Callable[[], None]) -> None:
        """Run ``guard()`` before every unit of work; it may raise to refuse it.

        The database breaker (kit/resilience.py) refuses here while the database is known to
        be down, so a request fails fast instead of waiting on a pooled connection's ping.
        """
        if guard not in self._session_guards:
            self._session_guards.append(guard)

    def new_session(self, *, write: bool = True) -> AsyncSession:
        factory = self._write_factory if write else self._read_factory
        session: AsyncSession = factory()
        return session

    @asynccontextmanager
    async def session_scope(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block succeeds, rolls back when it raises."""
        if self._connection_turns is None:
            async with self._unit_of_work(write=write) as session:
                yield session
            return
        async with self._connection_turns, self._unit_of_work(write=write) as session:
            yield session

    @asynccontextmanager
    async def _unit_of_work(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        for guard in self._session_guards:
            guard()
        session = self.new_session(write=write)
        try:
            yield session
            if write:
                await session.commit()
                if session.info.pop(JOBS_ENQUEUED, False):
                    for callback in self._on_jobs_committed:
                        callback()
            else:
                await session.rollback()
        except BaseException:
            await session.rollback()
            raise
        finally:
            await session.close()

    async def ping(self) -> None:
        async with self.session_scope(write=False) as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if isinstance(self.bind, AsyncEngine):
            await self.bind.dispose()


class _TaskReentrantLock:
    """An asyncio lock its holder task may take again (nested units of work)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if self._owner is not task:
            await self._lock.acquire()
            self._owner = task
        self._depth += 1

    async def __aexit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).session_scope(write=True) as session:
        yield session


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).session_scope(write=False) as session:
        yield session


# scope="function": the commit happens after the endpoint returns but before the response is
# sent, so a client never sees success for a transaction that then failed to commit.
WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
