from __future__ import annotations

import gc

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.migrate import head_revision
from tests.fixtures.routes import api_routes


async def test_health_answers_without_dependencies(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_answers_and_migrations_current(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["migrations"] == {
        "ok": True,
        "current": head_revision(),
        "head": head_revision(),
    }


async def test_ready_is_503_when_migrations_are_behind(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.session_scope() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"]["ok"] is False


async def test_openapi_lists_every_route(app: FastAPI, client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    app_paths = {route.path for route in api_routes(app) if route.include_in_schema}
    assert app_paths
    assert app_paths <= set(schema["paths"])
    assert "Problem" in schema["components"]["schemas"]


async def test_start_up_objects_are_left_out_of_full_collections(app: FastAPI) -> None:
    # gc.freeze() at start-up: the full collections walk only what requests create, not the
    # whole application (they paused the loop for up to 0.4 s under load before).
    assert gc.get_freeze_count() > 0


async def test_a_stopped_app_returns_its_objects_to_the_collector(
    settings: Settings, db: Database, keyring: Keyring
) -> None:
    async with LifespanManager(create_app(settings, database=db, keyring=keyring)):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
