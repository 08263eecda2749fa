"""A real server for SDK and multi-process tests: uvicorn in a subprocess on loopback.

Each :class:`ServerStack` has its own database (a SQLite file, or a fresh PostgreSQL database
with Redis), its own secret store and service client, created through the real CLI, so the
server, the CLI and the test share keys the way an operator's machines do.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aayu_accounts import migrate
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import (
    create_pg_database,
    drop_pg_database,
    make_settings,
    server_test_env,
)
from tests.fixtures.services import REDIS_URL
from tests.identity.accounts.helpers import Account, login, register, token_from_email


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aayu_accounts.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer /health in time")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


@dataclass
class ServerStack:
    settings: Settings
    env: dict[str, str]
    cwd: Path
    key_id: str = ""
    secret: str = ""
    servers: list[ServerProcess] = field(default_factory=list)

    def server(self) -> ServerProcess:
        server = ServerProcess(self.env, self.cwd)
        self.servers.append(server)
        return server

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aayu_accounts", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=120,
            check=False,
        )

    def create_client(self, name: str = "scribe-backend") -> None:
        created = self.cli("clients", "create", name, "--json")
        assert created.returncode == 0, created.stderr
        issued = json.loads(created.stdout)
        self.key_id, self.secret = issued["key_id"], issued["secret"]

    async def signed_in_account(self, base_url: str) -> Account:
        """A user signed up, verified (link read from the outbox) and signed in over HTTP."""
        db = Database.from_settings(self.settings)
        runtime = await start_keyring(self.settings, db, refresh=False)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
                account = await register(http)
                token = await token_from_email(db, account.email, "verify_email")
                verified = await http.post("/api/v1/auth/verify-email", json={"token": token})
                assert verified.status_code == 200, verified.text
                response = await login(http, account)
                assert response.status_code == 200, response.text
                account.token = response.json()["token"]
                account.user_id = response.json()["user"]["id"]
                return account
        finally:
            await runtime.stop()
            await db.dispose()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@asynccontextmanager
async def server_stack(backend: str, tmp_path: Path) -> AsyncIterator[ServerStack]:
    """A migrated database of its own, an environment for servers and the CLI, a client."""
    pg_name = None
    if backend == "postgresql":
        pg_name = f"aayu_srv_{uuid.uuid4().hex[:12]}"
        url = await create_pg_database(pg_name)
        extra = {"redis_url": REDIS_URL, "redis_prefix": f"aayu-test:{uuid.uuid4().hex[:12]}:"}
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        extra = {}
    settings = make_settings(url, tmp_path, **extra)
    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AAYU_ENV": "test",
        "AAYU_DATABASE_URL": url,
        "AAYU_VAR_DIR": str(tmp_path),
        "AAYU_SECRETS_DIR": str(tmp_path / "secrets"),
        "AAYU_LEGACY_STORE_DIR": str(tmp_path / "legacy-store"),
        "AAYU_LOG_LEVEL": "WARNING",
        "AAYU_RUN_WORKER_IN_PROCESS": "false",
        "AAYU_ARGON2_MEMORY_KIB": "1024",
        "AAYU_ARGON2_TIME_COST": "1",
        **server_test_env(),
    }
    if "redis_url" in extra:
        env["AAYU_REDIS_URL"] = str(extra["redis_url"])
        env["AAYU_REDIS_PREFIX"] = str(extra["redis_prefix"])
    stack = ServerStack(settings=settings, env=env, cwd=tmp_path)
    try:
        stack.create_client()
        yield stack
    finally:
        stack.stop()
        if pg_name is not None:
            await drop_pg_database(pg_name)
