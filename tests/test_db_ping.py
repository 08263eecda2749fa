"""PostgreSQL's pool pre-ping: still on every checkout, now one round trip instead of three.

SQLAlchemy's asyncpg adapter pinged with BEGIN, an empty query and ROLLBACK; db.py sends the
empty query alone. What the server is sent is read from asyncpg's own query log on the pooled
connection; a connection killed while idle in the pool is still replaced at checkout.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings
from tests.fixtures.services import postgres_available, require


@pytest_asyncio.fixture
async def pg_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    require("PostgreSQL", postgres_available())
    name = f"aayu_ping_{uuid.uuid4().hex[:12]}"
    url = await create_pg_database(name)
    # One pooled connection, so every unit of work checks out the same one.
    engine = create_engine(make_settings(url, tmp_path, db_pool_size=1, db_max_overflow=0))
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_pg_database(name)


async def _driver_connection(engine: AsyncEngine) -> Any:
    async with engine.connect() as connection:
        return (await connection.get_raw_connection()).driver_connection


async def test_pre_ping_is_one_empty_query_before_the_unit_of_work(pg_engine: AsyncEngine) -> None:
    assert pg_engine.pool._pre_ping  # issue #7: kept
    sent: list[str] = []
    (await _driver_connection(pg_engine)).add_query_logger(lambda query: sent.append(query.query))
    async with Database(pg_engine).session_scope() as session:
        await session.execute(text("SELECT 1"))
    # The checkout's ping, then the unit of work's own BEGIN (before: BEGIN; ; ROLLBACK; first).
    assert sent[:2] == [";", "BEGIN;"], sent
    assert "ROLLBACK;" not in sent


@pytest.mark.parametrize("write", [True, False])
async def test_a_connection_killed_in_the_pool_is_replaced_at_checkout(
    pg_engine: AsyncEngine, write: bool, tmp_path: Path
) -> None:
    db = Database(pg_engine)
    async with db.session_scope(write=write) as session:
        killed = await session.scalar(text("SELECT pg_backend_pid()"))
    admin = create_engine(
        make_settings(pg_engine.url.render_as_string(hide_password=False), tmp_path)
    )
    try:
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
            await connection.commit()
    finally:
        await admin.dispose()
    async with db.session_scope(write=write) as session:
        fresh = await session.scalar(text("SELECT pg_backend_pid()"))
    assert fresh != killed
