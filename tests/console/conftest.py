"""Console tests drive the HTML pages through the app (httpx, no browser): cheap Argon2."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from aayu_accounts.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


@pytest_asyncio.fixture(loop_scope="session")
async def console(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client over HTTPS (the cookies are Secure outside development)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c
