"""A rollback reaches two real server processes (``aayu-accounts serve``) within a second.

PostgreSQL + Redis, as in production: each server reports the flag configuration version it
applied in ``/ready``; the rollback is committed here (as ``aayu-accounts rollback`` does) and
the version each server reports is watched. The servers' poll is set to 30 s, so only the
pub/sub announcement can explain a sub-second arrival.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.incident import service as incident_service
from tests.fixtures.database import make_settings

OPERATOR = Actor.system("test-operator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def version_of(client: httpx.AsyncClient, port: int) -> int | None:
    try:
        response = await client.get(f"http://127.0.0.1:{port}/ready", timeout=2)
    except httpx.HTTPError:
        return None
    flags = response.json().get("checks", {}).get("flags", {})
    version = flags.get("config_version")
    return int(version) if version is not None else None


@pytest.mark.committing
async def test_rollback_reaches_two_server_processes_within_a_second(
    backend: str, settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql" or not settings.redis_url:
        pytest.skip("several server processes need PostgreSQL and Redis")
    instance = make_settings(
        fresh_database_url,
        tmp_path,
        redis_url=settings.redis_url,
        redis_prefix=settings.redis_prefix,
    )
    db = Database(create_engine(instance))
    async with db.session_scope() as session:
        await flag_service.update_flag(
            session, "NEW_AUTH", FlagUpdate(enabled=True, rollout_percent=25), actor=OPERATOR
        )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AAYU_ENV": "test",
        "AAYU_DATABASE_URL": fresh_database_url,
        "AAYU_REDIS_URL": settings.redis_url,
        "AAYU_REDIS_PREFIX": settings.redis_prefix,
        "AAYU_VAR_DIR": str(tmp_path / "var"),
        "AAYU_SECRETS_DIR": str(tmp_path / "var" / "secrets"),
        "AAYU_RUN_WORKER_IN_PROCESS": "false",
        "AAYU_FLAG_POLL_SECONDS": "30",
        "AAYU_LOG_LEVEL": "WARNING",
    }
    ports = [free_port(), free_port()]
    servers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aayu_accounts",
            "serve",
            "--port",
            str(port),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 90
            while True:
                versions = [await version_of(client, port) for port in ports]
                if all(v is not None for v in versions):
                    break
                assert time.monotonic() < deadline, "the servers did not start"
                assert all(s.returncode is None for s in servers), "a server exited"
                await asyncio.sleep(0.2)
            before = versions[0]
            assert versions == [before, before]
            # Let both servers' Redis listeners subscribe (they do right after start-up).
            await asyncio.sleep(1.0)

            channel = fanout.redis_channel(settings.redis_prefix, "flags")
            async with (
                fanout.redis_publishing(settings.redis_url, channel),
                db.session_scope() as session,
            ):
                _, version = await incident_service.rollback(
                    session, actor=OPERATOR, kind="manual", reason="test"
                )
            committed = time.perf_counter()
            arrived: dict[int, float] = {}
            while len(arrived) < 2 and time.perf_counter() - committed < 10:
                for port in ports:
                    if port not in arrived and await version_of(client, port) == version:
                        arrived[port] = time.perf_counter() - committed
                await asyncio.sleep(0.01)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait(), timeout=15)
            except TimeoutError:
                server.kill()
                await server.wait()
        await db.dispose()
    assert len(arrived) == 2, f"not every server applied version {version}: {arrived}"
    assert max(arrived.values()) < 1.0, arrived
