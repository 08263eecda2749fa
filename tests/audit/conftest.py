"""Audit tests that need a trail of their own: an empty, freshly migrated database per backend.

The shared test database cannot serve them: audit rows are append-only, so events other tests
commit stay for the whole run, and tamper tests drop the triggers (as an intruder with
database access would), which must never affect anyone else.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts import migrate
from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings

MIGRATION = (
    Path(__file__).resolve().parents[2]
    / "migrations"
    / "versions"
    / "2026-11-28-1951_audit_trail.py"
)


def audit_migration() -> ModuleType:
    """The audit migration module itself, so tests use the exact trigger DDL it installs."""
    spec = importlib.util.spec_from_file_location("audit_trail_migration", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _fresh_schema(engine: AsyncEngine) -> None:
    # A pooled SQLite connection can keep a stale copy of the schema (it checks the schema
    # cookie when it next locks, after CREATE/DROP TRIGGER has already been parsed): start
    # every connection afresh after changing triggers.
    if engine.dialect.name == "sqlite":
        await engine.dispose()


async def drop_triggers(engine: AsyncEngine) -> None:
    await _fresh_schema(engine)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(
                text("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
            )
            await conn.execute(
                text("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
            )
            await conn.execute(text("DROP FUNCTION IF EXISTS audit_events_guard()"))
            await conn.execute(text("DROP FUNCTION IF EXISTS audit_events_refuse_truncate()"))
        else:
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
    await _fresh_schema(engine)


async def restore_triggers(engine: AsyncEngine) -> None:
    migration = audit_migration()
    statements = (
        migration.PG_TRIGGERS if engine.dialect.name == "postgresql" else migration.SQLITE_TRIGGERS
    )
    await _fresh_schema(engine)
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await _fresh_schema(engine)


async def wipe_trail(engine: AsyncEngine) -> None:
    """Empty the trail for the next test: the intruder's way, then the triggers back."""
    await drop_triggers(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events"))
        await conn.execute(text("DELETE FROM audit_archive_permits"))
    await restore_triggers(engine)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def audit_engine(backend: str, session_var_dir: Path) -> AsyncIterator[AsyncEngine]:
    if backend == "sqlite":
        name = f"audit-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{session_var_dir / name}"
        pg_name = None
    else:
        pg_name = f"aayu_audit_{uuid.uuid4().hex[:12]}"
        url = await create_pg_database(pg_name)
    settings = make_settings(url, session_var_dir)
    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
        if pg_name:
            await drop_pg_database(pg_name)


@pytest_asyncio.fixture(loop_scope="session")
async def trail_db(audit_engine: AsyncEngine) -> AsyncIterator[Database]:
    """An empty trail of its own, in a transaction rolled back after the test."""
    async with audit_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield Database(connection)
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest_asyncio.fixture(loop_scope="session")
async def committing_trail_db(audit_engine: AsyncEngine) -> AsyncIterator[Database]:
    """An empty trail of its own that really commits; emptied again after the test."""
    await wipe_trail(audit_engine)
    yield Database(audit_engine)
    await wipe_trail(audit_engine)
