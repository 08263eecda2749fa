"""Migrations: up, down to base, up again on both databases; models and migrations agree."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts import migrate
from aayu_accounts.db import create_engine
from aayu_accounts.models import Base
from aayu_accounts.models.base import NAMING_CONVENTION
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
        datetime.strptime(stem, "%Y-%m-%d-%H%M")  # noqa: DTZ007 - a file name, not a moment
    # One line of history: a single head (get_current_head raises on several), every file in it.
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() is not None
    chain = list(script.walk_revisions())
    assert len(chain) == len(versions)


@pytest.mark.parametrize("name", ["jobs", "leader_leases"])
def test_foundation_tables_are_in_the_models(name: str) -> None:
    assert name in Base.metadata.tables


def _unconventional_names(connection: Connection) -> list[tuple[str, str, str | None]]:
    inspector = inspect(connection)
    wrong: list[tuple[str, str, str | None]] = []
    for table in _tables(connection):
        pk = inspector.get_pk_constraint(table).get("name")
        if pk is not None and pk != f"pk_{table}":
            wrong.append(("pk", table, pk))
        named: list[tuple[str, str, str | None]] = [
            *(("fk", f"fk_{table}_", c["name"]) for c in inspector.get_foreign_keys(table)),
            *(("uq", f"uq_{table}_", c["name"]) for c in inspector.get_unique_constraints(table)),
            *(("ck", f"ck_{table}_", c["name"]) for c in inspector.get_check_constraints(table)),
            # PostgreSQL lists a unique constraint's index too; it carries the uq_ name.
            *(
                ("ix", "ix_", i["name"])
                for i in inspector.get_indexes(table)
                if "duplicates_constraint" not in i
            ),
        ]
        wrong.extend(
            (kind, table, name)
            for kind, prefix, name in named
            if not str(name or "").startswith(prefix)
        )
    return wrong


async def test_migrations_name_constraints_by_the_models_convention(
    empty_engine: AsyncEngine,
) -> None:
    assert Base.metadata.naming_convention == NAMING_CONVENTION
    await migrate.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(_unconventional_names) == []


def test_no_schema_is_built_with_create_all() -> None:
    # The schema comes from the migrations; create_all would hide a missing or wrong one.
    # Tests may build tables of their own test-only declarative bases.
    root = Path(__file__).resolve().parents[1]
    offenders: list[str] = []
    for folder in ("src", "migrations", "tests"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            for name in re.findall(r"(\w+)\.metadata\.create_all\b|\bcreate_all\(", text):
                own_base = bool(name) and name != "Base" and f"class {name}(" in text
                if not own_base and path.name != Path(__file__).name:
                    offenders.append(f"{path.relative_to(root)}: {name or 'create_all'}")
    assert offenders == []
