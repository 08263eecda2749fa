"""Fixtures for the accounts side of identity: cheap Argon2, and helpers that sign people up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Argon2 at 1 MiB / t=1 keeps these tests fast; the parameter and timing tests (and the
    # benchmarks) use the real cost. ALTCHA's work is lowered for the same reason.
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_with(settings: Settings, db: Database, keyring: Keyring) -> AppFactory:
    """An app (and client) with some settings changed, on the test's database."""

    @asynccontextmanager
    async def factory(**changes: object) -> AsyncIterator[httpx.AsyncClient]:
        application = create_app(settings.model_copy(update=changes), database=db, keyring=keyring)
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c

    return factory
