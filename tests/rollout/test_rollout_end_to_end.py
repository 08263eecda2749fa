"""The issue's "done when": traffic at 25 % NEW_AUTH, failures injected into the new path,
the leader's monitor rolls back, and

* no sign-in failed for any user (FALLBACK served them through the v2.5 check),
* NEW_AUTH is off on both instances within a second of the rollback,
* the incident report exists (row and file) and the critical alert fired.

Two application instances on one database of their own: one is the leader (it runs the
scheduler and the worker), the other only serves. On PostgreSQL their outcomes meet in Redis
and the rollback reaches the other instance through Redis pub/sub; SQLite is the embedded,
one-process mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from aayu_accounts.app import create_app
from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.models.alert import Alert
from aayu_accounts.models.incident import Incident
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.runtime import FlagRuntime
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.legacy.credentials import LegacyCredentials, legacy_subject, parse
from aayu_accounts.rollout.settings import RolloutSettings
from aayu_accounts.rollout.sign_in import route_sign_in
from tests.fixtures.database import make_settings

USERS = 40
OPERATOR = Actor.system("test-operator")


def credentials() -> LegacyCredentials:
    users = [{"username": f"clin{i}", "password": f"pw-{i}-v25"} for i in range(USERS)]
    return LegacyCredentials.from_users(parse('{"users": ' + str(users).replace("'", '"') + "}"))


async def prepare(database: Database) -> dict[str, str]:
    """Migrated v2.5 users and the strategy's day-17 state: NEW_AUTH at 25 %, FALLBACK on."""
    ids = {}
    async with database.session_scope() as session:
        for i in range(USERS):
            user = User(email=f"clin{i}@clinic.example", full_name=f"C {i}", password_hash="x")
            session.add(user)
            await session.flush()
            session.add(LegacyUserLink(legacy_subject=legacy_subject(f"clin{i}"), user_id=user.id))
            ids[f"clin{i}"] = user.id
        await flag_service.update_flag(
            session, "NEW_AUTH", FlagUpdate(enabled=True, rollout_percent=25), actor=OPERATOR
        )
        await flag_service.update_flag(
            session, "FALLBACK", FlagUpdate(enabled=True), actor=OPERATOR
        )
    return ids


def runtime(app: FastAPI) -> FlagRuntime:
    flag_runtime: FlagRuntime = app.state.flag_runtime
    return flag_runtime


async def sign_in(app: FastAPI, username: str, password: str) -> str:
    ctx: RolloutContext = app.state.rollout

    async def broken_new_path() -> str:
        raise ConnectionResetError("injected: new identity store failing")

    async def accept(user_id: str) -> str:
        return f"session-for:{user_id}"

    async def reject() -> str:
        return "refused"

    async with app.state.db.session_scope() as session:
        result, _ = await route_sign_in(
            session,
            ctx,
            username,
            password,
            hasher=app.state.identity.hasher,
            new_path=broken_new_path,
            accept=accept,
            reject=reject,
        )
    return result


@pytest.mark.committing
async def test_failing_new_path_is_rolled_back_everywhere_without_a_failed_sign_in(
    backend: str, settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    extra: dict[str, object] = {}
    if settings.redis_url:
        extra = {"redis_url": settings.redis_url, "redis_prefix": settings.redis_prefix}
    rollout = RolloutSettings.model_validate(
        {
            "flag_poll_seconds": 0.2 if backend == "sqlite" else 30.0,
            "auto_rollback_interval_seconds": 0.5,
            "auto_rollback_min_requests": 20,
            "incident_dir": tmp_path / "incidents",
        }
    )
    setup = Database(create_engine(make_settings(fresh_database_url, tmp_path, **extra)))
    try:
        ids = await prepare(setup)
    finally:
        await setup.dispose()
    fallbacks_before = metrics.ROLLOUT_FALLBACKS.labels("auth", "error")._value.get()

    async with AsyncExitStack() as stack:
        apps = []
        for leader in (True, False):
            app = create_app(
                make_settings(
                    fresh_database_url,
                    tmp_path,
                    run_worker_in_process=leader,
                    job_poll_seconds=0.2,
                    **extra,
                )
            )
            runtime(app).configure(rollout)
            app.state.rollout.legacy_credentials = credentials()
            await stack.enter_async_context(LifespanManager(app))
            apps.append(app)

        results: list[str] = []
        flipped: dict[int, float] = {}

        async def watch() -> None:
            while len(flipped) < 2:
                for index, app in enumerate(apps):
                    flags = runtime(app).store.snapshot.flags
                    if index not in flipped and not flags["NEW_AUTH"].enabled:
                        flipped[index] = time.time()
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        while len(flipped) < 2 and time.monotonic() - started < 30:
            results.extend(
                [await sign_in(apps[i % 2], f"clin{i}", f"pw-{i}-v25") for i in range(USERS)]
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher, timeout=5)

    assert len(flipped) == 2, "NEW_AUTH was not turned off on both instances"
    assert set(results) <= {f"session-for:{user_id}" for user_id in ids.values()}
    assert len(results) >= USERS
    fallbacks = metrics.ROLLOUT_FALLBACKS.labels("auth", "error")._value.get() - fallbacks_before
    assert fallbacks >= 20

    check = Database(create_engine(make_settings(fresh_database_url, tmp_path)))
    try:
        async with check.session_scope(write=False) as session:
            incidents = (await session.scalars(select(Incident))).all()
            assert len(incidents) == 1
            incident = incidents[0]
            rolled_back_at = incident.created_at.timestamp()
            summary = (incident.kind, incident.flags_after["NEW_AUTH"]["enabled"])
            alert = await session.scalar(select(Alert).where(Alert.key == "rollout.auto_rollback"))
            assert alert is not None
            alert_severity = alert.severity
    finally:
        await check.dispose()
    assert summary == ("automatic", False)
    assert alert_severity == "critical"
    assert max(flipped.values()) - rolled_back_at < 1.0
    assert abs(flipped[0] - flipped[1]) < 1.0
    reports = list((tmp_path / "incidents").glob("incident-*.md"))
    assert len(reports) == 1
