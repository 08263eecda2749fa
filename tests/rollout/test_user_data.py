"""A v2.5 user's documents through every stage of the rollout, on SQLite and PostgreSQL.

Flags off, 25 %, 100 %, and after a rollback: the user always reads what they wrote, and
with SHADOW_WRITES a document written on one side is on the other after the switch.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user_document import UserDocument
from aayu_accounts.rollout.bucketing import bucket
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore
from tests.identity.accounts.helpers import Account, signed_up

ADMIN = Actor.system("test-operator")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


async def set_flag(db: Database, app: FastAPI, key: str, **change: Any) -> None:
    async with db.session_scope() as session:
        await flag_service.update_flag(session, key, FlagUpdate(**change), actor=ADMIN)
    await app.state.flag_runtime.reload(source="test")


async def legacy_user(client: httpx.AsyncClient, db: Database, username: str) -> Account:
    """A v2.5 user migrated into the identity store (the link the migration writes)."""
    account = await signed_up(client, db)
    async with db.session_scope() as session:
        session.add(
            LegacyUserLink(legacy_subject=legacy_subject(username), user_id=account.user_id)
        )
    return account


async def in_database(db: Database, subject: str, key: str) -> dict[str, Any] | None:
    async with db.session_scope() as session:
        return await DatabaseDocumentStore(session).get(subject, key)


def legacy_store(settings: Settings) -> LegacyDocumentStore:
    return LegacyDocumentStore(settings.legacy_store_dir)


async def run_jobs(db: Database) -> int:
    return await Worker(db).run_once()


def username_in_bucket(inside: bool, percent: int = 25) -> str:
    for i in range(1000):
        name = f"clinician{i}"
        if (bucket("v3-rollout", legacy_subject(name)) <= percent) is inside:
            return name
    raise AssertionError("no such username")


async def test_documents_survive_every_stage_of_the_rollout(
    seeded_db: Database, app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    db = seeded_db
    username = username_in_bucket(inside=True)
    account = await legacy_user(client, db, username)
    subject = legacy_subject(username)
    legacy = legacy_store(settings)
    await set_flag(db, app, "SHADOW_WRITES", enabled=True)

    # Stage 0: every new-path flag off -> the legacy store is authoritative.
    put = await client.put("/api/v1/me/data/prefs", json={"theme": "dark"}, headers=account.auth)
    assert put.status_code == 200, put.text
    assert await legacy.get(subject, "prefs") == {"theme": "dark"}
    assert await in_database(db, subject, "prefs") is None  # not yet: the shadow job runs after
    assert await run_jobs(db) >= 1
    assert await in_database(db, subject, "prefs") == {"theme": "dark"}

    # Stage 1: 25 % (this user is inside the first quarter) -> the database.
    await set_flag(db, app, "NEW_DATABASE", enabled=True, rollout_percent=25)
    assert (await client.get("/api/v1/me/data/prefs", headers=account.auth)).json() == {
        "theme": "dark"
    }
    put = await client.put("/api/v1/me/data/drafts", json={"n": 1}, headers=account.auth)
    assert put.status_code == 200
    assert await in_database(db, subject, "drafts") == {"n": 1}
    assert await legacy.get(subject, "drafts") is None
    await run_jobs(db)
    assert await legacy.get(subject, "drafts") == {"n": 1}

    # Stage 2: 100 %.
    await set_flag(db, app, "NEW_DATABASE", rollout_percent=100)
    await client.put("/api/v1/me/data/prefs", json={"theme": "light"}, headers=account.auth)
    deleted = await client.delete("/api/v1/me/data/drafts", headers=account.auth)
    assert deleted.status_code == 204
    await run_jobs(db)
    assert await legacy.get(subject, "prefs") == {"theme": "light"}
    assert await legacy.get(subject, "drafts") is None

    # Stage 3: rollback -> legacy again, and nothing written on the new side is lost.
    async with db.session_scope() as session:
        await incident_service.rollback(session, actor=ADMIN, kind="manual", reason="test")
    await app.state.flag_runtime.reload(source="test")
    keys = (await client.get("/api/v1/me/data", headers=account.auth)).json()
    assert keys == {"keys": ["prefs"]}
    got = await client.get("/api/v1/me/data/prefs", headers=account.auth)
    assert got.json() == {"theme": "light"}
    missing = await client.get("/api/v1/me/data/drafts", headers=account.auth)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


async def test_outside_the_percentage_stays_on_legacy(
    seeded_db: Database, app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    username = username_in_bucket(inside=False)
    account = await legacy_user(client, seeded_db, username)
    await set_flag(seeded_db, app, "NEW_DATABASE", enabled=True, rollout_percent=25)
    await client.put("/api/v1/me/data/prefs", json={"a": 1}, headers=account.auth)
    assert await legacy_store(settings).get(legacy_subject(username), "prefs") == {"a": 1}
    assert await in_database(seeded_db, legacy_subject(username), "prefs") is None


async def test_new_store_only_users_always_use_the_database(
    seeded_db: Database, client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await signed_up(client, seeded_db)
    put = await client.put("/api/v1/me/data/prefs", json={"a": 1}, headers=account.auth)
    assert put.status_code == 200
    assert await in_database(seeded_db, account.user_id, "prefs") == {"a": 1}
    assert await legacy_store(settings).subjects() == []


async def test_fallback_hides_a_failing_database_from_the_user(
    seeded_db: Database,
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    username = username_in_bucket(inside=True)
    account = await legacy_user(client, seeded_db, username)
    await set_flag(seeded_db, app, "NEW_DATABASE", enabled=True, rollout_percent=100)
    await set_flag(seeded_db, app, "FALLBACK", enabled=True)

    async def failing_put(*_args: object) -> None:
        raise ConnectionResetError("injected: the new store is down")

    monkeypatch.setattr(DatabaseDocumentStore, "put", failing_put)
    put = await client.put("/api/v1/me/data/prefs", json={"a": 2}, headers=account.auth)
    assert put.status_code == 200, put.text
    assert await legacy_store(settings).get(legacy_subject(username), "prefs") == {"a": 2}

    await set_flag(seeded_db, app, "FALLBACK", enabled=False)
    refused = await client.put("/api/v1/me/data/prefs", json={"a": 3}, headers=account.auth)
    assert refused.status_code == 503


async def test_import_is_idempotent_and_validated(
    seeded_db: Database, client: httpx.AsyncClient
) -> None:
    account = await signed_up(client, seeded_db)
    snapshot = {"prefs": {"theme": "dark"}, "templates": {"soap": "S"}}
    for _ in range(2):
        response = await client.post("/api/v1/me/data/import", json=snapshot, headers=account.auth)
        assert response.json() == {"imported": 2}
    async with seeded_db.session_scope() as session:
        rows = (
            await session.scalars(
                select(UserDocument.key).where(UserDocument.subject == account.user_id)
            )
        ).all()
    assert sorted(rows) == ["prefs", "templates"]
    bad_key = await client.put("/api/v1/me/data/a%2Fb", json={}, headers=account.auth)
    assert bad_key.status_code in (404, 422)
    not_object = await client.put("/api/v1/me/data/k", json=[1, 2], headers=account.auth)
    assert not_object.status_code == 422
    too_big = await client.put(
        "/api/v1/me/data/k", json={"x": "y" * (65 * 1024)}, headers=account.auth
    )
    assert too_big.status_code == 413
    anonymous = await client.get("/api/v1/me/data")
    assert anonymous.status_code == 401
