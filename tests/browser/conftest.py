"""Browser tests: the real server (``aayu-accounts serve`` in a subprocess, as ``make run``
starts it) on a free loopback port, a real SMTP server on loopback capturing its emails, and
Debian's headless ``chromium`` driven by Playwright (its bundled driver; no browser download).

Fixtures:
* ``live_server`` (module): ``LiveServer`` with ``.url``, ``.emails`` (an ``Inbox``) and
  ``.env`` (the ``AAYU_*`` environment, e.g. to run CLI commands against the same database).
* ``browser`` (module): a launched Chromium; ``page`` (function): a fresh context and page
  whose console errors and CSP violations fail the test.
* ``screenshot(page, name)``: saves ``test-output/browser/<name>.png``.

Without ``/usr/bin/chromium`` the tests skip, unless ``AAYU_REQUIRE_SERVICES=1`` (CI), where
they fail: ``make test`` installs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from aayu_accounts import migrate
from aayu_accounts.config import Settings
from aayu_accounts.db import create_engine
from tests.email.smtp_server import RecordingHandler, smtp_server
from tests.fixtures.database import create_pg_database, drop_pg_database, server_test_env
from tests.fixtures.services import (
    REDIS_URL,
    REQUIRE_SERVICES,
    postgres_available,
    redis_available,
    require,
)

CHROMIUM = os.environ.get("AAYU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
CLI = [sys.executable, "-m", "aayu_accounts"]
_EXPECTED_4XX = "Failed to load resource: the server responded with a status of 4"
_TOKEN_LINK = re.compile(r"https?://[^\s\"'<>]+[?&]token=[A-Za-z0-9_\-]+")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Inbox:
    """The messages the server sent through SMTP."""

    handler: RecordingHandler

    def to(self, address: str) -> list[Message]:
        return [m for m in self.handler.messages if address in str(m.get("To", ""))]

    def link_to(self, address: str, path: str) -> str:
        """The last link to ``path`` (e.g. ``/verify-email``) emailed to ``address``."""
        for message in reversed(self.to(address)):
            for part in message.walk():
                if part.get_content_maintype() != "text":
                    continue
                payload = part.get_payload(decode=True)
                text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                for link in _TOKEN_LINK.findall(text):
                    if path in link:
                        return str(link)
        raise AssertionError(f"no email to {address} links to {path}")


@dataclass
class LiveServer:
    url: str
    emails: Inbox
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*CLI, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout


async def _wait_until_up(url: str, process: subprocess.Popen[bytes], within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1) as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                if (await probe.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # readiness polling of a starting process
    raise RuntimeError("the server did not start in time")


async def _migrated(env: dict[str, str]) -> None:
    """The schema, migrated here (this process has the code loaded; a CLI run would import
    it all again)."""
    settings = Settings.model_validate(
        {"env": "development", "database_url": env["AAYU_DATABASE_URL"]}
    )
    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def live_server_backend() -> str:
    """The live server's database: "sqlite" (as `make run`); a module overrides this fixture
    with "postgresql" to run its journeys on PostgreSQL + Redis (production's stores)."""
    return "sqlite"


@asynccontextmanager
async def _database(backend: str, var_dir: Path) -> AsyncIterator[dict[str, str]]:
    """The AAYU_* settings of a fresh, migrated database for the live server."""
    if backend == "sqlite":
        env = {"AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'aayu.db'}"}
        await _migrated(env)
        yield env
        return
    require("PostgreSQL", postgres_available())
    require("Redis", redis_available())
    name = f"aayu_browser_{uuid.uuid4().hex[:12]}"
    env = {
        "AAYU_DATABASE_URL": await create_pg_database(name),
        "AAYU_REDIS_URL": REDIS_URL,
        "AAYU_REDIS_PREFIX": f"{name}:",
    }
    try:
        await _migrated(env)
        yield env
    finally:
        await drop_pg_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live_server(
    tmp_path_factory: pytest.TempPathFactory, live_server_backend: str
) -> AsyncIterator[LiveServer]:
    var_dir = tmp_path_factory.mktemp("browser-var")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with smtp_server() as (handler, smtp_port):
        async with (
            _database(live_server_backend, var_dir) as database,
            _serve(url, var_dir, smtp_port, database, handler) as server,
        ):
            yield server


@asynccontextmanager
async def _serve(
    url: str, var_dir: Path, smtp_port: int, database: dict[str, str], handler: RecordingHandler
) -> AsyncIterator[LiveServer]:
    """``aayu-accounts serve`` on ``url``'s port, as `make run` starts it."""
    port = url.rsplit(":", 1)[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AAYU_")},
        # Development, as `make run`: plain HTTP on loopback, cookies without Secure.
        "AAYU_ENV": "development",
        **database,
        "AAYU_VAR_DIR": str(var_dir),
        "AAYU_SECRETS_DIR": str(var_dir / "secrets"),
        "AAYU_LEGACY_STORE_DIR": str(var_dir / "legacy-store"),
        "AAYU_PUBLIC_URL": url,
        "AAYU_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "AAYU_JOB_POLL_SECONDS": "0.2",
        # Cheap hashing and proof of work keep the journeys quick.
        "AAYU_ARGON2_MEMORY_KIB": "1024",
        "AAYU_ARGON2_TIME_COST": "1",
        "AAYU_ALTCHA_MAX_NUMBER": "5000",
        "AAYU_LOG_LEVEL": "WARNING",
        **server_test_env(),
    }
    log = (var_dir / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once; it runs beside the tests
        [*CLI, "serve", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_until_up(url, process)
        yield LiveServer(url=url, emails=Inbox(handler), env=env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM) or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"{CHROMIUM} is missing (make test installs Debian's chromium)"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium_or_skip()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, live_server: LiveServer) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) on the live server. Console errors (a script
    refused by the CSP, a failed load) and requests leaving the server fail the test."""
    context = await browser.new_context(
        base_url=live_server.url,
        viewport={"width": 820, "height": 1180},  # a tablet, portrait
    )
    # A CI machine under load answers slower than a desk: generous waits (they end as soon as
    # the condition holds, so a fast run stays fast).
    context.set_default_timeout(30_000)
    expect.set_options(timeout=15_000)
    problems: list[str] = []
    outside: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A 4xx page (a refused sign-in) is logged as a failed load: that is the app's
        # answer, not a page fault. Everything else (a CSP refusal, a script error) counts.
        if message.type == "error" and not message.text.startswith(_EXPECTED_4XX):
            problems.append(message.text)

    new_page = await context.new_page()
    new_page.on("console", on_console)
    new_page.on("pageerror", lambda error: problems.append(str(error)))
    new_page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((live_server.url, "data:", "blob:"))
            else outside.append(request.url)
        ),
    )
    try:
        yield new_page
    finally:
        await context.close()
    assert not outside, f"the page loaded something from outside the service: {outside}"
    assert not problems, f"browser console errors: {problems}"


async def screenshot(page: Page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
