from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.routing import APIRoute
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


async def test_ready_is_503_when_the_database_does_not_answer(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    working = app.state.db
    # A real server address where nothing listens: the driver's connect is refused.
    unreachable = Database.from_settings(
        settings.model_copy(update={"database_url": "postgresql+asyncpg://aayu@127.0.0.1:1/none"})
    )
    app.state.db = unreachable
    try:
        response = await client.get("/ready")
    finally:
        app.state.db = working
        await unreachable.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["migrations"]["ok"] is False
    assert (await client.get("/health")).status_code == 200, "liveness checks no dependency"


async def test_openapi_lists_every_route(app: FastAPI, client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    routes = api_routes(app)
    app_paths = {route.path for route in routes if route.include_in_schema}
    assert app_paths
    assert app_paths <= set(schema["paths"])
    for route in routes:
        if route.include_in_schema:
            listed = {method.upper() for method in schema["paths"][route.path]}
            assert route.methods - {"HEAD", "OPTIONS"} <= listed, route
    assert {"/health", "/ready", "/metrics"} <= set(schema["paths"])
    assert "Problem" in schema["components"]["schemas"]
    # Only the console's HTML pages are left out of the API's schema (DESIGN.md).
    unlisted = {endpoint.__module__ for endpoint in _endpoints(app, in_schema=False)}
    assert unlisted
    assert all(module.startswith("aayu_accounts.console.") for module in unlisted), unlisted


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


def _endpoints(app: FastAPI, *, in_schema: bool) -> list[Callable[..., Any]]:
    found: list[Callable[..., Any]] = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            if route.include_in_schema is in_schema:
                found.append(route.endpoint)
            continue
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            continue
        found.extend(
            context.original_route.endpoint
            for context in contexts()
            if isinstance(context.original_route, APIRoute)
            and context.include_in_schema is in_schema
        )
    return found
