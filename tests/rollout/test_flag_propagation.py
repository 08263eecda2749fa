"""A flag change reaches every instance in under a second; the poll catches lost messages.

Each test runs two application instances (two ``create_app`` with their own engines) on a
database of their own, and changes flags as an operator in another unit of work would. On
PostgreSQL with Redis the message travels by Redis pub/sub; on PostgreSQL without Redis by
LISTEN/NOTIFY; the poll interval is set to 30 s there, so only the push can explain a
sub-second arrival. SQLite (embedded, one process) relies on the poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from aayu_accounts.app import create_app
from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.runtime import FlagRuntime
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.settings import RolloutSettings
from tests.fixtures.database import make_settings

OPERATOR = Actor.user("operator")


def _instance_settings(settings: Settings, url: str, tmp_path: Path, *, redis: bool) -> Settings:
    extra: dict[str, object] = {}
    if redis and settings.redis_url:
        extra = {"redis_url": settings.redis_url, "redis_prefix": settings.redis_prefix}
    return make_settings(url, tmp_path, **extra)


@asynccontextmanager
async def two_instances(
    instance_settings: Settings, poll_seconds: float
) -> AsyncIterator[list[FastAPI]]:
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(2):
            app = create_app(instance_settings)
            app.state.flag_runtime.configure(RolloutSettings(flag_poll_seconds=poll_seconds))
            await stack.enter_async_context(LifespanManager(app))
            apps.append(app)
        yield apps


def runtime(app: FastAPI) -> FlagRuntime:
    flag_runtime: FlagRuntime = app.state.flag_runtime
    return flag_runtime


def flag_is(app: FastAPI, key: str, expected: bool) -> Callable[[], bool]:
    return lambda: runtime(app).store.snapshot.is_enabled(key) is expected


def version_is(app: FastAPI, version: int) -> Callable[[], bool]:
    return lambda: runtime(app).store.version == version


async def operator_change(
    instance_settings: Settings, monkeypatch: pytest.MonkeyPatch, key: str, change: FlagUpdate
) -> float:
    """Change a flag as another process would (no in-process shortcut); returns commit time."""
    database = Database(create_engine(instance_settings))
    channel = fanout.redis_channel(instance_settings.redis_prefix, RolloutSettings().flag_channel)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(fanout, "_publishers", [])
            async with fanout.redis_publishing(instance_settings, channel):
                async with database.session_scope() as session:
                    await flag_service.update_flag(session, key, change, actor=OPERATOR)
                committed = time.perf_counter()
        return committed
    finally:
        await database.dispose()


async def wait_until(condition: Callable[[], bool], within: float) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)
    return time.perf_counter()


async def _kill_switch_round_trip(
    instance_settings: Settings, monkeypatch: pytest.MonkeyPatch, poll_seconds: float
) -> float:
    async with two_instances(instance_settings, poll_seconds) as apps:
        await operator_change(
            instance_settings,
            monkeypatch,
            "NEW_AUTH",
            FlagUpdate(enabled=True, rollout_percent=100),
        )
        for app in apps:
            await wait_until(flag_is(app, "NEW_AUTH", True), 5)
        committed = await operator_change(
            instance_settings, monkeypatch, "NEW_AUTH", FlagUpdate(enabled=False)
        )
        arrivals = [await wait_until(flag_is(app, "NEW_AUTH", False), 5) for app in apps]
        versions = {runtime(app).store.version for app in apps}
        assert len(versions) == 1
        return max(arrivals) - committed


@pytest.mark.committing
async def test_kill_switch_reaches_both_instances_within_a_second(
    backend: str,
    settings: Settings,
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance_settings = _instance_settings(settings, fresh_database_url, tmp_path, redis=True)
    # Push (Redis on PostgreSQL) must beat a 30 s poll; SQLite has only the poll.
    poll = 0.2 if backend == "sqlite" else 30.0
    elapsed = await _kill_switch_round_trip(instance_settings, monkeypatch, poll)
    assert elapsed < 1.0


@pytest.mark.committing
async def test_listen_notify_without_redis(
    backend: str,
    settings: Settings,
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    instance_settings = _instance_settings(settings, fresh_database_url, tmp_path, redis=False)
    assert instance_settings.redis_url is None
    elapsed = await _kill_switch_round_trip(instance_settings, monkeypatch, 30.0)
    assert elapsed < 1.0


@pytest.mark.committing
async def test_poll_catches_a_change_no_message_announced(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    instance_settings = _instance_settings(settings, fresh_database_url, tmp_path, redis=True)
    async with two_instances(instance_settings, poll_seconds=0.2) as apps:
        before = runtime(apps[0]).store.version
        engine = create_engine(instance_settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE feature_flags SET enabled = true, rollout_percent = 100"
                        " WHERE key = 'FALLBACK'"
                    )
                )
                await conn.execute(text("UPDATE flag_config_state SET version = version + 1"))
        finally:
            await engine.dispose()
        for app in apps:
            await wait_until(version_is(app, before + 1), 2)
            assert runtime(app).store.snapshot.is_enabled("FALLBACK")


@pytest.mark.committing
async def test_ready_reports_the_applied_version(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    instance_settings = _instance_settings(settings, fresh_database_url, tmp_path, redis=True)
    instance_settings = instance_settings.model_copy(update={"metrics_token": "m" * 40})
    async with two_instances(instance_settings, poll_seconds=0.2) as apps:
        transport = httpx.ASGITransport(app=apps[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = (await client.get("/ready")).json()
            token = {"Authorization": "Bearer " + "m" * 40}
            metrics_text = (await client.get("/metrics", headers=token)).text
    flags = body["checks"]["flags"]
    assert flags["ok"] is True
    assert flags["config_version"] == runtime(apps[0]).store.version >= 1
    assert flags["stale"] is False
    assert "aayu_flag_config_version" in metrics_text


async def test_a_stale_snapshot_is_reported(seeded_db: Database, settings: Settings) -> None:
    flag_runtime = FlagRuntime(settings, RolloutSettings(flag_max_staleness_seconds=0.05))
    await flag_runtime.start(seeded_db)
    try:
        assert not flag_runtime.store.is_stale()
        await asyncio.sleep(0.1)
        assert flag_runtime.store.is_stale()
        assert flag_runtime.readiness()["stale"] is True
        await flag_runtime.reload(source="test")
        assert not flag_runtime.store.is_stale()
    finally:
        await flag_runtime.stop()
