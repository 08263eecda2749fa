"""Shared fixtures. Database fixtures run every test that uses them on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from _pytest.terminal import TerminalReporter
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit import clock, resilience

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.crypto",
    "tests.fixtures.stripe",
    "tests.audit.sweep",
    "tests.security.log_sweep",  # every log line of the run, swept for secrets at the end
]

_ran_on: Counter[str] = Counter()
_backend_of: dict[str, str] = {}


@pytest.fixture(autouse=True)
def closed_breakers() -> Iterator[None]:
    """Breakers are per process (kit/resilience.py): no test inherits another's open one."""
    for dependency in resilience.all_dependencies():
        dependency.reset()
    yield
    for dependency in resilience.all_dependencies():
        dependency.configure(resilience.DEFAULT_POLICIES[dependency.name])
        dependency.reset()


@pytest.fixture
def frozen_clock() -> Iterator[clock.FrozenClock]:
    with clock.use_clock(clock.FrozenClock()) as frozen:
        assert isinstance(frozen, clock.FrozenClock)
        yield frozen


@pytest_asyncio.fixture(loop_scope="session")
async def app(settings: Settings, db: Database, keyring: Keyring) -> AsyncIterator[FastAPI]:
    application = create_app(settings, database=db, keyring=keyring)
    async with LifespanManager(application):
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        _backend_of[item.nodeid] = str(params.get("backend", "no database"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        _ran_on[_backend_of.get(report.nodeid, "no database")] += 1


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    terminalreporter.write_line(
        "tests passed per backend: "
        + ", ".join(f"{name}={_ran_on[name]}" for name in ("sqlite", "postgresql", "no database"))
    )
