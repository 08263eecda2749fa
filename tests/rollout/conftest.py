"""Fixtures of the rollout tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aayu_accounts import migrate
from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database, create_engine
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.rollout.flag import service as flag_service
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings


@pytest.fixture
def hasher() -> PasswordHasher:
    # Cheap parameters: these tests are about migrating and routing, not Argon2's cost.
    return PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


@pytest_asyncio.fixture(loop_scope="session")
async def seeded_db(db: Database) -> Database:
    """``db`` with the five built-in flags present (another test's commit may have emptied
    the shared test database)."""
    async with db.session_scope() as session:
        await flag_service.ensure_builtin_flags(session, actor=Actor.system("test"))
    return db


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own, migrated to head, for tests that commit for real."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        engine = create_engine(make_settings(url, tmp_path))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        yield url
        return
    name = f"aayu_rollout_{uuid.uuid4().hex[:12]}"
    url = await create_pg_database(name)
    try:
        engine = create_engine(make_settings(url, tmp_path))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        await drop_pg_database(name)
