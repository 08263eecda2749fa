"""The issue's first "done when", through the HTTP API, on SQLite and PostgreSQL.

Two v2.5 users (in ``AAYU_LEGACY_AUTH_FILE``, migrated into the identity store) sign in with
their v2.5 password and write and read their documents at every stage of the strategy's
plan: every flag off, day 17 (NEW_AUTH and NEW_DATABASE at 25 %), day 21 (100 % with
BILLING), and after an operator's rollback. One user is inside the first quarter of the
shared bucket group, the other outside it, so 25 % sends them different ways. At each
stage the test checks which path served the sign-in (the router's metric) and which store
took the write (the store itself), and that every document written on one side is on the
other after the switch (SHADOW_WRITES).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.jobs import Worker
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.bucketing import bucket
from aayu_accounts.rollout.flag.runtime import FlagRuntime
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore
from tests.identity.accounts.helpers import (
    Account,
    register,
    strong_password,
    unique_email,
    verify,
)
from tests.rollout.test_admin_api import platform_admin

GROUP = "v3-rollout"  # the bucket group NEW_AUTH, NEW_DATABASE and BILLING share


def username(inside_first_quarter: bool) -> str:
    for i in range(1000):
        name = f"v25-clinician{i}"
        if (bucket(GROUP, legacy_subject(name)) <= 25) is inside_first_quarter:
            return name
    raise AssertionError("no such username")


INSIDE, OUTSIDE = username(True), username(False)
PASSWORD = {INSIDE: strong_password(), OUTSIDE: strong_password()}
EMAIL = {INSIDE: unique_email("v25in"), OUTSIDE: unique_email("v25out")}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    credentials = tmp_path / "v25-users.json"
    credentials.write_text(
        json.dumps(
            {
                "users": [
                    {"username": name, "password": PASSWORD[name], "email": EMAIL[name]}
                    for name in (INSIDE, OUTSIDE)
                ]
            }
        )
    )
    return settings.model_copy(
        update={
            "legacy_auth_file": credentials,
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "altcha_max_number": 5000,
        }
    )


def runtime(app: FastAPI) -> FlagRuntime:
    flag_runtime: FlagRuntime = app.state.flag_runtime
    return flag_runtime


async def set_flags(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, **changes: dict[str, Any]
) -> None:
    """Change flags as an operator does (the admin API), then apply them in this instance."""
    for key, change in changes.items():
        response = await client.put(f"/api/v1/admin/flags/{key}", json=change, headers=admin.auth)
        assert response.status_code == 200, response.text
    await runtime(app).reload(source="test")


async def migrated(client: httpx.AsyncClient, db: Database, name: str) -> None:
    """The v2.5 user's identity account, linked as ``migrate legacy-users`` links it (the same
    password in both stores, as the migration hashes the v2.5 one)."""
    account = await register(client, email=EMAIL[name], password=PASSWORD[name])
    await verify(client, db, account)
    user_id = await _user_id(db, EMAIL[name])
    async with db.session_scope() as session:
        session.add(LegacyUserLink(legacy_subject=legacy_subject(name), user_id=user_id))


async def _user_id(db: Database, email: str) -> str:
    async with db.session_scope(write=False) as session:
        user = await user_repository.get_by_email(session, email)
        assert user is not None
        return str(user.id)


def sign_ins(path: str) -> float:
    return float(metrics.ROLLOUT_REQUESTS.labels("auth", path, "ok")._value.get())


async def sign_in(client: httpx.AsyncClient, name: str) -> tuple[dict[str, str], str]:
    """Sign in with the v2.5 password; returns the session header and the path that served."""
    before = {path: sign_ins(path) for path in ("legacy", "new")}
    response = await client.post(
        "/api/v1/auth/login", json={"email": EMAIL[name], "password": PASSWORD[name]}
    )
    client.cookies.clear()
    assert response.status_code == 200, response.text
    served = [path for path in ("legacy", "new") if sign_ins(path) == before[path] + 1]
    assert len(served) == 1, served
    return {"Authorization": f"Bearer {response.json()['token']}"}, served[0]


async def run_jobs(db: Database) -> None:
    while await Worker(db).run_once():
        pass


async def in_database(db: Database, subject: str, key: str) -> dict[str, Any] | None:
    async with db.session_scope(write=False) as session:
        return await DatabaseDocumentStore(session).get(subject, key)


async def test_v25_users_sign_in_and_keep_their_documents_through_the_rollout(
    seeded_db: Database, app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    db = seeded_db
    legacy = LegacyDocumentStore(settings.legacy_store_dir)
    admin = await platform_admin(client, db)
    for name in (INSIDE, OUTSIDE):
        await migrated(client, db, name)
    await set_flags(
        client,
        app,
        admin,
        NEW_AUTH={"enabled": False, "rollout_percent": 0},
        NEW_DATABASE={"enabled": False, "rollout_percent": 0},
        BILLING={"enabled": False, "rollout_percent": 0},
        SHADOW_WRITES={"enabled": True, "rollout_percent": 100},
    )

    written: dict[str, dict[str, dict[str, Any]]] = {INSIDE: {}, OUTSIDE: {}}

    async def stage(label: str, expected: dict[str, str]) -> None:
        for name, path in expected.items():
            subject = legacy_subject(name)
            headers, served = await sign_in(client, name)
            assert served == path, (label, name)
            key, document = f"notes-{label}", {"stage": label, "by": "v2.5 user"}
            put = await client.put(f"/api/v1/me/data/{key}", json=document, headers=headers)
            assert put.status_code == 200, put.text
            written[name][key] = document
            # The authoritative store took the write before any shadow copy ran.
            on_legacy = await legacy.get(subject, key)
            on_database = await in_database(db, subject, key)
            if path == "new":
                assert (on_database, on_legacy) == (document, None), (label, name)
            else:
                assert (on_legacy, on_database) == (document, None), (label, name)
            await run_jobs(db)
            assert await legacy.get(subject, key) == document
            assert await in_database(db, subject, key) == document
            # Everything written at earlier stages, on either side, reads back now.
            listed = await client.get("/api/v1/me/data", headers=headers)
            assert listed.json() == {"keys": sorted(written[name])}, (label, name)
            for earlier, content in written[name].items():
                got = await client.get(f"/api/v1/me/data/{earlier}", headers=headers)
                assert got.status_code == 200, (label, name, earlier)
                assert got.json() == content

    await stage("off", {INSIDE: "legacy", OUTSIDE: "legacy"})

    # Day 17 of the plan: NEW_AUTH and NEW_DATABASE at 25 %.
    quarter = {"enabled": True, "rollout_percent": 25}
    await set_flags(client, app, admin, NEW_AUTH=quarter, NEW_DATABASE=quarter)
    await stage("25", {INSIDE: "new", OUTSIDE: "legacy"})

    # Day 21: 100 % with BILLING.
    full = {"enabled": True, "rollout_percent": 100}
    await set_flags(client, app, admin, NEW_AUTH=full, NEW_DATABASE=full, BILLING=full)
    await stage("100", {INSIDE: "new", OUTSIDE: "new"})

    rolled = await client.post(
        "/api/v1/admin/rollback", json={"reason": "journey test"}, headers=admin.auth
    )
    assert rolled.status_code == 200, rolled.text
    await runtime(app).reload(source="test")
    assert not runtime(app).store.snapshot.is_enabled("NEW_AUTH", user_id=legacy_subject(INSIDE))
    await stage("after-rollback", {INSIDE: "legacy", OUTSIDE: "legacy"})
