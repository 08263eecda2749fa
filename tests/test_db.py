"""Database layer: SQLite pragmas, aware datetimes, the slow-statement log, the commit edge."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite_dialect

from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
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
