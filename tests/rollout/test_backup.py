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
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database, create_engine
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.identity.user import service as user_service
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
from tests.identity.accounts.helpers import strong_password
from tests.rollout.test_flags_cli import cli_env, run_cli

EMAILS = [f"clinician{i}@clinic.example" for i in range(3)]
SIGN_IN_EMAIL = "signs-in@clinic.example"
SIGN_IN_PASSWORD = strong_password()
CHEAP_ARGON2 = {"argon2_memory_kib": 1024, "argon2_time_cost": 1}


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
    fresh_database_url: str, empty_database_url: str, tmp_path: Path, keyring: Keyring
) -> None:
    source = database(fresh_database_url, tmp_path)
    service_settings = make_settings(empty_database_url, tmp_path, **CHEAP_ARGON2)
    hasher = PasswordHasher.from_settings(service_settings)
    try:
        async with source.session_scope() as session:
            for email in EMAILS:
                await user_repository.add(
                    session, User(email=email, full_name="Dr X", password_hash="x")
                )
            signs_in = await user_service.create_verified_user(
                session,
                settings=service_settings,
                hasher=hasher,
                policy=PasswordPolicy.from_settings(service_settings),
                email=SIGN_IN_EMAIL,
                password=SIGN_IN_PASSWORD,
                full_name="Dr Restored",
                platform_admin=False,
                actor=Actor.system("test"),
            )
            signs_in_id = signs_in.id
            await flag_service.update_flag(
                session,
                "NEW_AUTH",
                FlagUpdate(enabled=True, rollout_percent=25),
                actor=Actor.system("test"),
            )
        file = tmp_path / "backups" / "aayu.backup"
        manifest = await create_backup(source, fresh_database_url, file)
    finally:
        hasher.close()
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
    assert count == 4
    assert names == ["Dr X"] * 3
    assert snapshot.flags["NEW_AUTH"].rollout_percent == 25

    # The service starts on it, is ready (schema current), and the same person signs in as
    # the same user (the keys are the deployment's, as after a real restore).
    app = create_app(service_settings, keyring=keyring)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/ready")
            signed_in = await client.post(
                "/api/v1/auth/login", json={"email": SIGN_IN_EMAIL, "password": SIGN_IN_PASSWORD}
            )
    assert ready.status_code == 200, ready.text
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == signs_in_id


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
        assert await cache.purge(settings) == 2
        assert await client.get(f"{other}keep") == b"1"
    finally:
        await client.delete(f"{other}keep")
        await client.aclose()


@pytest.mark.committing
async def test_backup_and_cache_commands_as_an_operator_runs_them(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    """``backup create``, ``backup restore`` (refusing an older schema without ``--force``)
    and ``cache purge`` from the shell, on the configured database."""
    env = cli_env(settings, fresh_database_url, tmp_path)
    file = tmp_path / "backups" / "aayu.backup"

    def new_auth() -> dict[str, object]:
        listed = json.loads(run_cli("flags", "list", "--json", env=env, cwd=tmp_path).stdout)
        flag: dict[str, object] = next(f for f in listed if f["key"] == "NEW_AUTH")
        return flag

    run_cli("flags", "set", "NEW_AUTH", "--on", "--percent", "25", env=env, cwd=tmp_path)
    created = json.loads(
        run_cli("backup", "create", str(file), "--json", env=env, cwd=tmp_path).stdout
    )
    assert created["size_bytes"] == file.stat().st_size > 0
    assert manifest_path(file).exists()

    run_cli("flags", "set", "NEW_AUTH", "--off", "--percent", "0", env=env, cwd=tmp_path)
    assert new_auth()["enabled"] is False
    restored = json.loads(
        run_cli("backup", "restore", str(file), "--json", env=env, cwd=tmp_path).stdout
    )
    assert restored["schema_revision"] == created["schema_revision"]
    assert (new_auth()["enabled"], new_auth()["rollout_percent"]) == (True, 25)

    manifest = json.loads(manifest_path(file).read_text())
    manifest["schema_revision"] = "0001_foundation"
    manifest_path(file).write_text(json.dumps(manifest))
    refused = run_cli("backup", "restore", str(file), env=env, cwd=tmp_path, check=False)
    assert refused.returncode == 1
    assert "newer than the backup" in refused.stderr
    run_cli("backup", "restore", str(file), "--force", env=env, cwd=tmp_path)

    purged = run_cli("cache", "purge", env=env, cwd=tmp_path).stdout
    if settings.redis_url:
        assert f"under {settings.redis_prefix!r}" in purged
    else:
        assert "no Redis configured" in purged
