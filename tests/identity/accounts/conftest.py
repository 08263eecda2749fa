"""Fixtures for the accounts side of identity: cheap Argon2, and helpers that sign people up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts import migrate
from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import create_pg_database, drop_pg_database


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Argon2 at 1 MiB / t=1 keeps these tests fast; the parameter and timing tests (and the
    # benchmarks) use the real cost. ALTCHA's work is lowered for the same reason.
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def app_factory(settings: Settings, database: Database, keyring: Keyring) -> AppFactory:
    """Each call runs a new app (and client) on ``database``, with some of ``settings`` changed."""

    @asynccontextmanager
    async def factory(**changes: object) -> AsyncIterator[httpx.AsyncClient]:
        application = create_app(
            settings.model_copy(update=changes), database=database, keyring=keyring
        )
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c

    return factory


@pytest.fixture
def app_with(settings: Settings, db: Database, keyring: Keyring) -> AppFactory:
    """An app (and client) with some settings changed, on the test's database."""
    return app_factory(settings, db, keyring)


@pytest_asyncio.fixture(loop_scope="session")
async def own_database(
    backend: str, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[AsyncEngine, Settings]]:
    """A freshly migrated database of this test's own, committed to for real and dropped after.

    For tests that need real commits (concurrency, several instances, raw scans) without
    emptying the shared test database under everyone else (``committing_db`` does that).
    """
    name: str | None = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    else:
        name = f"aayu_own_{uuid.uuid4().hex[:12]}"
        url = await create_pg_database(name)
    own = settings.model_copy(update={"database_url": url})
    engine = create_engine(own)
    try:
        await migrate.upgrade(engine)
        yield engine, own
    finally:
        await engine.dispose()
        if name is not None:
            await drop_pg_database(name)


@pytest.fixture
def shared_db(own_database: tuple[AsyncEngine, Settings]) -> Database:
    return Database(own_database[0])


@pytest.fixture
def instance(
    own_database: tuple[AsyncEngine, Settings], shared_db: Database, keyring: Keyring
) -> AppFactory:
    """App instances as separate processes: one database (``shared_db``) and one Redis."""
    _, own_settings = own_database
    if not own_settings.redis_url:
        pytest.skip("shared state between instances needs Redis (the PostgreSQL backend)")
    return app_factory(own_settings, shared_db, keyring)
