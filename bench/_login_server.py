"""A real ``aayu-accounts serve`` process for the sign-in benchmarks, in a throwaway directory.

Production-like by default: a fresh PostgreSQL database and Redis (when they answer on their
local ports; ``AAYU_BENCH_BACKEND=sqlite`` forces embedded mode), with the *real* Argon2id
parameters. The API rate limit and the sign-in throttle are raised out of the way: the
benchmarks measure hashing and the event loop, not the limits (which have their own tests).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from aayu_accounts.kit import clock

UNLIMITED = "1000000"
PG_ADMIN_URL = os.environ.get(
    "AAYU_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AAYU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    database_url: str
    log_path: Path
    backend: str

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def register_verified(self, client: httpx.Client, count: int) -> list[tuple[str, str]]:
        """``count`` accounts that can sign in: (email, password)."""
        accounts = []
        for index in range(count):
            email = f"bench.user{index}.{secrets.token_hex(3)}@clinic-example.org"
            password = f"Quartz {secrets.token_urlsafe(12)} marble orchid"
            response = client.post(
                "/api/v1/auth/register",
                json={
                    "email": email,
                    "password": password,
                    "full_name": f"Bench Person {index}",
                    "organization_name": f"Bench Clinic {index}",
                },
            )
            if response.status_code != 202:
                raise RuntimeError(f"register: {response.status_code} {response.text[:500]}")
            accounts.append((email, password))
        # Reading the verification links would mean decrypting the outbox; in a throwaway
        # database it is simpler to mark the accounts verified directly.
        now = clock.now()
        # SQLite keeps datetimes as text in SQLAlchemy's format; PostgreSQL takes them as is.
        value = now if self.backend == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S.%f")
        statement = "UPDATE users SET email_verified_at = :now"
        asyncio.run(_execute(self.database_url, statement, now=value))
        return accounts


async def _execute(url: str, statement: str, *, autocommit: bool = False, **params: object) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT" if autocommit else None)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    backend = os.environ.get("AAYU_BENCH_BACKEND") or (
        "postgresql" if _answers(5432) and _answers(6379) else "sqlite"
    )
    with tempfile.TemporaryDirectory(prefix="aayu-bench-") as tmp:
        var = Path(tmp) / "var"
        var.mkdir(parents=True)
        env = {
            **os.environ,
            "AAYU_ENV": "development",
            "AAYU_VAR_DIR": str(var),
            "AAYU_SECRETS_DIR": str(var / "secrets"),
            "AAYU_RUN_WORKER_IN_PROCESS": "false",
            "AAYU_LOG_LEVEL": "WARNING",
            "AAYU_RATE_LIMIT_DEFAULT": f"{UNLIMITED}/minute",
            "AAYU_LOGIN_PAIR_CAPTCHA_AFTER": UNLIMITED,
            "AAYU_LOGIN_PAIR_BLOCK_AFTER": UNLIMITED,
            "AAYU_LOGIN_IP_CAPTCHA_AFTER": UNLIMITED,
            "AAYU_LOGIN_IP_BLOCK_AFTER": UNLIMITED,
            "AAYU_LOGIN_ACCOUNT_CAPTCHA_AFTER": UNLIMITED,
            **(extra_env or {}),
        }
        pg_name = f"aayu_bench_{uuid.uuid4().hex[:10]}"
        if backend == "postgresql":
            asyncio.run(_execute(PG_ADMIN_URL, f'CREATE DATABASE "{pg_name}"', autocommit=True))
            url = make_url(PG_ADMIN_URL).set(database=pg_name).render_as_string(hide_password=False)
            env["AAYU_REDIS_URL"] = REDIS_URL
            env["AAYU_REDIS_PREFIX"] = f"aayu-bench:{pg_name}:"
        else:
            url = f"sqlite+aiosqlite:///{var / 'aayu.db'}"
            env.pop("AAYU_REDIS_URL", None)
        env["AAYU_DATABASE_URL"] = url
        try:
            yield from _serve(env, url, Path(tmp), backend)
        finally:
            if backend == "postgresql":
                asyncio.run(
                    _execute(
                        PG_ADMIN_URL,
                        f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)',
                        autocommit=True,
                    )
                )


def _serve(env: dict[str, str], url: str, tmp: Path, backend: str) -> Iterator[Server]:
    command = [sys.executable, "-m", "aayu_accounts"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    # Logs to a file: a pipe nobody reads fills up and then blocks the server's writes.
    log_path = tmp / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, url, log_path, backend)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited: {server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")
