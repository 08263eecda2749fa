"""A rollback reaches two real server processes (``aayu-accounts serve``) within a second.

PostgreSQL + Redis, as in production: each server reports the flag configuration version it
applied in ``/ready``, which the test watches. The servers' poll is set to 30 s, so only the
pub/sub announcement can explain a sub-second arrival. Two ways to the rollback:

* committed here, as ``aayu-accounts rollback`` does;
* by the leader's auto-rollback monitor, after sign-ins at 25 % NEW_AUTH fail on the new path
  of both servers (the issue's second "done when", with real processes): nobody's sign-in
  fails (FALLBACK), both servers apply the rollback within a second, the incident report
  (row and file) exists and the critical alert fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring.runtime import keyring_scope
from aayu_accounts.db import Database, create_engine
from aayu_accounts.kit import clock
from aayu_accounts.models.alert import Alert
from aayu_accounts.models.incident import Incident
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.flag import repository as flag_repository
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from tests.fixtures.database import make_settings, server_test_env

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


def shared_instance(settings: Settings, database_url: str, tmp_path: Path) -> Settings:
    """This test's settings for its own database, on the run's Redis (as the servers are)."""
    if settings.redis_url is None:
        pytest.skip("several server processes need PostgreSQL and Redis")
    return make_settings(
        database_url, tmp_path, redis_url=settings.redis_url, redis_prefix=settings.redis_prefix
    )


def server_env(instance: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment both servers share: the instance's database, Redis and secrets."""
    assert instance.redis_url is not None
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AAYU_ENV": "test",
        "AAYU_DATABASE_URL": instance.database_url,
        "AAYU_REDIS_URL": instance.redis_url,
        "AAYU_REDIS_PREFIX": instance.redis_prefix,
        "AAYU_VAR_DIR": str(tmp_path / "var"),
        "AAYU_SECRETS_DIR": str(instance.secrets_dir),
        # Only the pub/sub announcement can explain a sub-second arrival.
        "AAYU_FLAG_POLL_SECONDS": "30",
        "AAYU_LOG_LEVEL": "WARNING",
        **server_test_env(),
        **extra,
    }


@contextlib.asynccontextmanager
async def two_servers(
    command: list[str], env: dict[str, str], cwd: Path, *, first_is_leader: bool
) -> AsyncIterator[tuple[list[int], int]]:
    """Two ``serve`` processes on free ports, up and agreeing on the flag version; yields
    (ports, that version). The leader runs the worker and scheduler (and so the monitor)."""
    ports = [free_port(), free_port()]
    leaders = (first_is_leader, False)
    servers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "serve",
            "--port",
            str(port),
            env={**env, "AAYU_RUN_WORKER_IN_PROCESS": "true" if leader else "false"},
            cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for leader, port in zip(leaders, ports, strict=True)
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
        assert before is not None
        assert versions == [before, before]
        await asyncio.sleep(1.0)  # both Redis listeners subscribed (right after start-up)
        yield ports, before
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait(), timeout=15)
            except TimeoutError:
                server.kill()
                await server.wait()


@pytest.mark.committing
async def test_rollback_reaches_two_server_processes_within_a_second(
    backend: str, settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("several server processes need PostgreSQL and Redis")
    instance = shared_instance(settings, fresh_database_url, tmp_path)
    db = Database(create_engine(instance))
    async with db.session_scope() as session:
        await flag_service.update_flag(
            session, "NEW_AUTH", FlagUpdate(enabled=True, rollout_percent=25), actor=OPERATOR
        )
    env = server_env(instance, tmp_path)
    try:
        async with (
            two_servers(["-m", "aayu_accounts"], env, tmp_path, first_is_leader=False) as up,
            httpx.AsyncClient() as client,
        ):
            ports, _ = up
            channel = fanout.redis_channel(settings.redis_prefix, "flags")
            async with (
                fanout.redis_publishing(settings, channel),
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
        await db.dispose()
    assert len(arrived) == 2, f"not every server applied version {version}: {arrived}"
    assert max(arrived.values()) < 1.0, arrived


# The second "done when", with real server processes: sign-ins at 25 % NEW_AUTH go to
# two ``serve`` processes whose new identity path fails (patched in before the CLI starts); the
# leader among them (it runs the worker and scheduler) sees both servers' outcomes in Redis,
# rolls back, and both servers apply it within a second; nobody's sign-in failed.
INJECT = """
import sys

from aayu_accounts.identity.auth_session import service


async def _failing_new_path(*_args, **_kwargs):
    raise ConnectionResetError("injected: the new identity store is failing")


service._password_path = _failing_new_path

from aayu_accounts.cli import main  # noqa: E402

main()
"""
USERS = 40
METRICS_TOKEN = "t" * 40


async def _migrated_users(db: Database, settings: Settings) -> dict[str, str]:
    """v2.5 users linked to identity users that need no further action at sign-in."""
    ids = {}
    async with db.session_scope() as session:
        for i in range(USERS):
            user = User(
                email=f"clin{i}@clinic.example",
                full_name=f"Clinician {i}",
                password_hash="unused: NEW_AUTH is failing",
                email_verified_at=clock.now(),
                terms_version=settings.terms_version,
                privacy_version=settings.privacy_version,
            )
            session.add(user)
            await session.flush()
            session.add(LegacyUserLink(legacy_subject=legacy_subject(f"clin{i}"), user_id=user.id))
            ids[f"clin{i}@clinic.example"] = user.id
        await flag_service.update_flag(
            session, "NEW_AUTH", FlagUpdate(enabled=True, rollout_percent=25), actor=OPERATOR
        )
        await flag_service.update_flag(
            session, "FALLBACK", FlagUpdate(enabled=True, rollout_percent=100), actor=OPERATOR
        )
    return ids


async def _fallbacks(client: httpx.AsyncClient, port: int) -> float:
    response = await client.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=5,
    )
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith("aayu_rollout_fallbacks_total{") and 'capability="auth"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.committing
async def test_monitor_rolls_back_two_server_processes_without_a_failed_sign_in(
    backend: str, settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("several server processes need PostgreSQL and Redis")
    instance = shared_instance(settings, fresh_database_url, tmp_path)
    db = Database(create_engine(instance))
    # The servers read the same secrets, so the accounts' encrypted fields decrypt there.
    async with keyring_scope(instance, db):
        ids = await _migrated_users(db, instance)
    credentials = tmp_path / "v25-users.json"
    credentials.write_text(
        json.dumps(
            {
                "users": [
                    {"username": f"clin{i}", "password": f"pw-{i}-v25", "email": email}
                    for i, email in enumerate(ids)
                ]
            }
        )
    )
    script = tmp_path / "serve_with_failing_new_path.py"
    script.write_text(INJECT)
    incidents_dir = tmp_path / "incidents"
    env = server_env(
        instance,
        tmp_path,
        AAYU_LEGACY_AUTH_FILE=str(credentials),
        AAYU_METRICS_TOKEN=METRICS_TOKEN,
        AAYU_RATE_LIMIT_DEFAULT="100000/minute",
        AAYU_JOB_POLL_SECONDS="0.2",
        AAYU_AUTO_ROLLBACK_INTERVAL_SECONDS="0.5",
        AAYU_AUTO_ROLLBACK_MIN_REQUESTS="20",
        AAYU_INCIDENT_DIR=str(incidents_dir),
    )
    answers: list[tuple[int, str | None]] = []
    flipped: dict[int, tuple[float, int]] = {}
    fallbacks = 0.0
    # The first server is the leader: the worker, the scheduler and so the monitor.
    async with (
        two_servers([str(script)], env, tmp_path, first_is_leader=True) as (ports, before),
        httpx.AsyncClient() as client,
    ):

        async def watch() -> None:
            while len(flipped) < 2:
                for port in ports:
                    version = await version_of(client, port)
                    if port not in flipped and version is not None and version != before:
                        flipped[port] = (time.time(), version)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        while len(flipped) < 2 and time.monotonic() - started < 60:
            for i, email in enumerate(ids):
                response = await client.post(
                    f"http://127.0.0.1:{ports[i % 2]}/api/v1/auth/login",
                    json={"email": email, "password": f"pw-{i}-v25"},
                    timeout=10,
                )
                user = response.json().get("user", {}) if response.status_code == 200 else {}
                answers.append((response.status_code, user.get("id")))
                assert user.get("id") == ids[email], response.text
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher, timeout=5)
        fallbacks = sum([await _fallbacks(client, port) for port in ports])
        report_deadline = time.monotonic() + 15
        while not list(incidents_dir.glob("incident-*.md")):  # written by the leader's job
            assert time.monotonic() < report_deadline, "no incident report file"
            await asyncio.sleep(0.2)

    try:
        async with db.session_scope(write=False) as session:
            incidents = [
                (i.kind, i.actor, i.flags_before, i.flags_after, i.created_at.timestamp())
                for i in (await session.scalars(select(Incident))).all()
            ]
            alert = await session.scalar(select(Alert).where(Alert.key == "rollout.auto_rollback"))
            flags = await flag_service.flag_states(session)
            version = await flag_repository.config_version(session)
            assert alert is not None
            alert_severity = alert.severity
    finally:
        await db.dispose()
    assert len(flipped) == 2, "the rollback did not reach both server processes"
    assert {seen for _, seen in flipped.values()} == {version}
    assert len(incidents) == 1
    kind, actor, flags_before, flags_after, rolled_back_at = incidents[0]
    assert (kind, actor) == ("automatic", "system:auto-rollback")
    assert flags_before["NEW_AUTH"]["enabled"] is True
    assert flags_after["NEW_AUTH"]["enabled"] is False
    assert flags["NEW_AUTH"]["enabled"] is False
    assert flags["FALLBACK"]["enabled"] is True
    assert alert_severity == "critical"
    # Every sign-in answered 200 with the right account, through failures and the rollback.
    assert len(answers) >= USERS
    assert all(status == 200 for status, _ in answers)
    # The new path really failed and FALLBACK served those users: the monitor needs 20.
    assert fallbacks >= 20
    assert max(at for at, _ in flipped.values()) - rolled_back_at < 1.0, flipped
