"""Billing test fixtures: the billing runtime configured from the test settings, an empty
entitlement cache, and the local provider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aayu_accounts import migrate
from aayu_accounts.billing import runtime
from aayu_accounts.billing.entitlement.cache import cache
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import create_pg_database, drop_pg_database


@pytest.fixture
def billing(settings: Settings) -> Iterator[runtime.BillingRuntime]:
    configured = runtime.configure(settings)
    cache.clear()
    yield configured
    cache.clear()


@pytest.fixture
def local_provider() -> LocalProvider:
    return LocalProvider()


@pytest_asyncio.fixture(loop_scope="session")
async def own_db(backend: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Database]:
    """A freshly migrated database of this test's own that really commits, dropped after
    (concurrency tests: separate connections, without touching the shared test database)."""
    name: str | None = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'billing-own.db'}"
    else:
        name = f"aayu_billing_{uuid.uuid4().hex[:12]}"
        url = await create_pg_database(name)
    engine = create_engine(settings.model_copy(update={"database_url": url}))
    try:
        await migrate.upgrade(engine)
        yield Database(engine)
    finally:
        await engine.dispose()
        if name is not None:
            await drop_pg_database(name)
