"""Backups: a backup restored into an empty database serves the same users and flags."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from aayu_accounts.app import create_app
from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.models.user import User
from aayu_accounts.rollout.backup import cache
from aayu_accounts.rollout.backup.service import (
    BackupFailed,
    create_backup,
    manifest_path,
    restore_backup,
)
from aayu_accounts.rollout.flag import loader
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings

EMAILS = [f"clinician{i}@clinic.example" for i in range(3)]


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it: not even the schema."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"aayu_restore_{uuid.uuid4().hex[:12]}"
    url = await create_pg_database(name)
    try:
        yield url
    finally:
        await drop_pg_database(name)


def database(url: str, tmp_path: Path) -> Database:
    return Database(create_engine(make_settings(url, tmp_path)))


@pytest.mark.committing
async def test_restore_into_an_empty_database_serves_the_same_users(
    fresh_database_url: str, empty_database_url: str, tmp_path: Path
) -> None:
    source = database(fresh_database_url, tmp_path)
    try:
        async with source.session_scope() as session:
            for email in EMAILS:
                await user_repository.add(
                    session, User(email=email, full_name="Dr X", password_hash="x")
                )
            await flag_service.update_flag(
                session,
                "NEW_AUTH",
                FlagUpdate(enabled=True, rollout_percent=25),
                actor=Actor.system("test"),
            )
        file = tmp_path / "backups" / "aayu.backup"
        manifest = await create_backup(source, fresh_database_url, file)
    finally:
        await source.dispose()
    assert manifest.size_bytes == file.stat().st_size > 0
    assert manifest.schema_revision is not None

    target = database(empty_database_url, tmp_path)
    await restore_backup(target, empty_database_url, file)
    restored = database(empty_database_url, tmp_path)
    try:
        async with restored.session_scope(write=False) as session:
            count = await session.scalar(select(func.count()).select_from(User))
            found = [await user_repository.get_by_email(session, e) for e in EMAILS]
            names = [u.full_name for u in found if u is not None]
            snapshot = await loader.load_snapshot(session)
    finally:
        await restored.dispose()
    assert count == 3
    assert names == ["Dr X"] * 3
    assert snapshot.flags["NEW_AUTH"].rollout_percent == 25

    # The service starts on it and is ready (schema current).
    app = create_app(make_settings(empty_database_url, tmp_path))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text


@pytest.mark.committing
async def test_restore_refuses_a_tampered_file_and_an_older_schema(
    fresh_database_url: str, tmp_path: Path
) -> None:
    db = database(fresh_database_url, tmp_path)
    file = tmp_path / "aayu.backup"
    try:
        await create_backup(db, fresh_database_url, file)
    finally:
        await db.dispose()

    manifest_file = manifest_path(file)
    manifest = json.loads(manifest_file.read_text())
    manifest["schema_revision"] = "0001_foundation"
    manifest_file.write_text(json.dumps(manifest))
    db = database(fresh_database_url, tmp_path)
    try:
        with pytest.raises(BackupFailed, match="newer than the backup"):
            await restore_backup(db, fresh_database_url, file)
    finally:
        await db.dispose()

    with file.open("ab") as stream:
        stream.write(b"tampered")
    db = database(fresh_database_url, tmp_path)
    try:
        with pytest.raises(BackupFailed, match="SHA-256"):
            await restore_backup(db, fresh_database_url, file, force=True)
    finally:
        await db.dispose()


async def test_cache_purge_only_touches_this_deployment(settings: Settings) -> None:
    if not settings.redis_url:
        pytest.skip("Redis runs with the PostgreSQL backend")
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(settings.redis_url)
    other = f"other-{uuid.uuid4().hex[:8]}:"
    try:
        await client.set(f"{settings.redis_prefix}a", "1")
        await client.set(f"{settings.redis_prefix}b", "1")
        await client.set(f"{other}keep", "1")
        assert await cache.purge(settings.redis_url, settings.redis_prefix) == 2
        assert await client.get(f"{other}keep") == b"1"
    finally:
        await client.delete(f"{other}keep")
        await client.aclose()
