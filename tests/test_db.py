"""Database layer: SQLite pragmas, aware datetimes, the slow-statement log, the commit edge."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import insert, select, text
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite_dialect

from aayu_accounts.config import Settings
from aayu_accounts.db import Database, ReadOnlyWrite, ReadSession, WriteSession, create_engine
from aayu_accounts.errors import Conflict
from aayu_accounts.log_config import configure_logging
from aayu_accounts.models import Job
from aayu_accounts.models.base import UTCDateTime
from tests.fixtures.database import make_settings


async def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db", tmp_path)
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
            assert (await conn.scalar(text("PRAGMA busy_timeout"))) == 15000
    finally:
        await engine.dispose()


def test_postgres_pool_uses_the_strategy_defaults(settings: Settings) -> None:
    defaults = Settings(database_url="postgresql+asyncpg://u@h/d")
    engine = create_engine(defaults)
    pool = engine.pool
    assert pool.size() + engine.pool._max_overflow == 20  # type: ignore[attr-defined]
    assert defaults.db_connect_timeout_seconds == 2.0
    assert defaults.db_pool_recycle_seconds == 30


async def test_datetimes_come_back_aware_utc(db: Database) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with db.session_scope() as session:
        session.add(Job(kind="k", payload={}, run_at=moment))
    async with db.session_scope(write=False) as session:
        stored = await session.scalar(select(Job.run_at))
    assert stored == moment
    assert stored is not None
    assert stored.tzinfo is not None


def test_naive_datetimes_are_refused() -> None:
    column_type = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2026, 1, 1), sqlite_dialect())  # noqa: DTZ001


async def test_slow_statements_are_logged_without_parameter_values(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/slow.db", tmp_path, db_slow_statement_seconds=0.0001
    )
    configure_logging("INFO", json=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT :value AS v"), {"value": "secret-param-value"})
    finally:
        handler.setStream(previous)
        await engine.dispose()
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    slow = [r for r in records if r.get("event") == "db.slow_statement"]
    assert any("SELECT" in r["statement"] for r in slow)
    assert "secret-param-value" not in stream.getvalue()


async def test_session_scope_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    async with db.session_scope() as session:
        session.add(Job(kind="kept", payload={}))
    with pytest.raises(RuntimeError):
        async with db.session_scope() as session:
            session.add(Job(kind="dropped", payload={}))
            await session.flush()
            raise RuntimeError
    async with db.session_scope(write=False) as session:
        kinds = set((await session.scalars(select(Job.kind))).all())
    assert kinds == {"kept"}


# --- the request edge: WriteSession commits after the endpoint, ReadSession never does -------

edge = APIRouter()


@edge.post("/_probe/edge/write/{kind}")
async def write_a_job(kind: str, session: WriteSession) -> dict[str, str]:
    session.add(Job(kind=kind, payload={}))
    await session.flush()  # services flush; only the edge commits
    if kind.startswith("refused"):
        raise Conflict("The endpoint failed after writing.")
    return {"kind": kind}


@edge.post("/_probe/edge/read/{kind}")
async def write_through_a_read_session(kind: str, session: ReadSession) -> dict[str, str]:
    session.add(Job(kind=kind, payload={}))
    await session.flush()
    return {"kind": kind}


@edge.post("/_probe/edge/commit-fails/{dedupe_key}")
async def commit_that_fails(dedupe_key: str, session: WriteSession) -> dict[str, str]:
    # Not flushed: the unique violation surfaces only when the edge commits.
    session.add(Job(kind="duplicate", payload={}, dedupe_key=dedupe_key))
    return {"answered": "before the commit"}


@pytest.fixture
def edge_app(app: FastAPI) -> FastAPI:
    app.include_router(edge)
    return app


async def _kinds(db: Database) -> set[str]:
    async with db.session_scope(write=False) as session:
        return set((await session.scalars(select(Job.kind))).all())


async def test_write_session_commits_when_the_endpoint_succeeds(
    client: httpx.AsyncClient, edge_app: FastAPI, db: Database
) -> None:
    response = await client.post("/_probe/edge/write/committed-by-edge")
    assert response.status_code == 200
    assert "committed-by-edge" in await _kinds(db)


async def test_write_session_rolls_back_when_the_endpoint_raises(
    client: httpx.AsyncClient, edge_app: FastAPI, db: Database
) -> None:
    response = await client.post("/_probe/edge/write/refused-and-dropped")
    assert response.status_code == 409
    assert "refused-and-dropped" not in await _kinds(db)


async def test_read_session_never_commits(
    client: httpx.AsyncClient, edge_app: FastAPI, db: Database
) -> None:
    # A write through a read session is a programming error: refused, and nothing is kept.
    response = await client.post("/_probe/edge/read/written-in-a-read-session")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "written-in-a-read-session" not in await _kinds(db)


async def test_a_read_only_unit_of_work_refuses_writes(db: Database) -> None:
    async with db.session_scope(write=False) as session:
        with pytest.raises(ReadOnlyWrite):
            await session.execute(insert(Job).values(kind="through-a-read-session", payload={}))
        session.add(Job(kind="flushed-in-a-read-session", payload={}))
        with pytest.raises(ReadOnlyWrite):
            await session.flush()
    assert not {"through-a-read-session", "flushed-in-a-read-session"} & await _kinds(db)


async def test_reads_on_postgresql_run_without_a_transaction(
    committing_db: Database, database_url: str
) -> None:
    """No BEGIN/ROLLBACK round trips for read-only work on PostgreSQL (autocommit): each
    statement is its own transaction; write units of work keep theirs."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite readers begin DEFERRED")
    # Each transaction that asks gets its own id: two asks, one transaction or two?
    xid = text("SELECT pg_current_xact_id()::text")
    async with committing_db.session_scope(write=False) as session:
        assert await session.scalar(xid) != await session.scalar(xid)
    async with committing_db.session_scope() as session:
        assert await session.scalar(xid) == await session.scalar(xid)


async def test_a_failed_commit_is_never_answered_with_success(
    client: httpx.AsyncClient, edge_app: FastAPI, db: Database
) -> None:
    async with db.session_scope() as session:
        session.add(Job(kind="original", payload={}, dedupe_key="taken"))
    response = await client.post("/_probe/edge/commit-fails/taken")
    # The commit runs after the endpoint returned but before the response is sent.
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "before the commit" not in response.text
    assert await _kinds(db) == {"original"}
