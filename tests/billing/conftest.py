"""Billing test fixtures: the billing runtime configured from the test settings, an empty
entitlement cache, the local provider, and the Stripe provider on localstripe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aayu_accounts import migrate
from aayu_accounts.billing import runtime
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.payment_provider.stripe import StripeProvider
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from tests.fixtures.billing_stripe import billing_runtime, stripe_provider, stripe_settings_for
from tests.fixtures.database import create_pg_database, drop_pg_database
from tests.fixtures.stripe import LocalStripe


@pytest.fixture
def billing(settings: Settings) -> Iterator[runtime.BillingRuntime]:
    with billing_runtime(settings) as configured:
        yield configured


@pytest.fixture
def local_provider() -> LocalProvider:
    return LocalProvider()


@pytest.fixture
def stripe_settings(settings: Settings, localstripe: LocalStripe) -> Settings:
    return stripe_settings_for(settings, localstripe)


@pytest_asyncio.fixture(loop_scope="session")
async def provider(stripe_settings: Settings) -> AsyncIterator[StripeProvider]:
    async with stripe_provider(stripe_settings) as created:
        yield created


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
