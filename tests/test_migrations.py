"""Migrations: up, down to base, up again on both databases; models and migrations agree."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts import migrate
from aayu_accounts.db import create_engine
from aayu_accounts.models import Base
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings


@pytest_asyncio.fixture(loop_scope="session")
async def empty_engine(backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if backend == "sqlite":
        engine = create_engine(make_settings(f"sqlite+aiosqlite:///{tmp_path}/m.db", tmp_path))
        yield engine
        await engine.dispose()
        return
    name = f"aayu_mig_{uuid.uuid4().hex[:12]}"
    url = await create_pg_database(name)
    engine = create_engine(make_settings(url, tmp_path))
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_pg_database(name)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(_tables) >= {"jobs", "leader_leases"}
    assert await migrate.current_revision(empty_engine) == migrate.head_revision()

    await migrate.downgrade(empty_engine, "base")
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    assert await migrate.current_revision(empty_engine) is None

    await migrate.upgrade(empty_engine)
    assert await migrate.current_revision(empty_engine) == migrate.head_revision()


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "render_as_batch": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_do_not_drift(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        differences = await conn.run_sync(_drift)
    assert differences == [], f"models and migrations differ: {differences}"


def test_migration_files_are_dated_and_chained() -> None:
    versions = sorted((migrate.migrations_dir() / "versions").glob("*.py"))
    assert versions
    for path in versions:
        stem = path.name.split("_", 1)[0]
        assert len(stem) == len("2026-11-28-1940"), path.name
    script_heads = migrate.head_revision()
    assert script_heads is not None


@pytest.mark.parametrize("name", ["jobs", "leader_leases"])
def test_foundation_tables_are_in_the_models(name: str) -> None:
    assert name in Base.metadata.tables
