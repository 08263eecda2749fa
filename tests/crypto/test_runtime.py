"""Start-up loading: master key from the secret store, key versions from the database."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, get_keyring, keyring_loaded
from aayu_accounts.crypto.keyring import service as keys
from aayu_accounts.crypto.keyring.master import MasterKeyMissing
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.crypto.secret_store.file import FileSecretStore
from aayu_accounts.db import Database


async def test_first_start_bootstraps_and_second_start_loads_the_same_keys(
    settings: Settings, db: Database
) -> None:
    first = await start_keyring(settings, db, refresh=False)
    try:
        assert set(first.keyring.purposes()) == set(KeyPurpose)
        assert get_keyring() is first.keyring
        version, mac = first.keyring.sign(KeyPurpose.SESSION, b"payload")
        sealed = first.keyring.encrypt(KeyPurpose.DATA, b"secret", b"aad")
    finally:
        await first.stop()
    master_file = settings.secrets_dir / "master-key"
    assert stat.S_IMODE(master_file.stat().st_mode) == 0o600
    second = await start_keyring(settings, db, refresh=False)
    try:
        assert second.keyring.verify(KeyPurpose.SESSION, b"payload", version, mac)
        assert second.keyring.decrypt(KeyPurpose.DATA, sealed, b"aad") == b"secret"
    finally:
        await second.stop()


async def test_the_app_uses_the_tests_keyring(
    app: FastAPI, client: httpx.AsyncClient, keyring: Keyring
) -> None:
    assert keyring_loaded()
    assert get_keyring() is keyring
    assert app.state.keyring_runtime.keyring is keyring


async def test_production_store_needs_init_master(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    store = FileSecretStore(tmp_path / "mounted-secrets", generate_missing=False)
    with pytest.raises(MasterKeyMissing, match="init-master"):
        await start_keyring(settings, db, store=store, refresh=False)
    async with db.session_scope() as session:
        assert await keys.init_master(session, store, recorder=keys.no_recorder) == "1"
    runtime = await start_keyring(settings, db, store=store, refresh=False)
    try:
        assert set(runtime.keyring.purposes()) == set(KeyPurpose)
    finally:
        await runtime.stop()
    async with db.session_scope() as session:
        with pytest.raises(keys.MasterKeyExists):
            await keys.init_master(session, store, recorder=keys.no_recorder)


async def test_the_lifespan_loads_the_keyring_from_the_database(
    settings: Settings, committing_db: Database, keyring: Keyring
) -> None:
    # A really committing database: the app's background tasks (health checks) use their own
    # connections, as in production, instead of interleaving savepoints on the test's one.
    application = create_app(settings, database=committing_db)
    async with LifespanManager(application):
        loaded = get_keyring()
        assert loaded is not keyring
        assert sorted(loaded.purposes()) == sorted(KeyPurpose), loaded.purposes()
        assert application.state.keyring_runtime.store is not None
    assert get_keyring() is keyring  # the previous keyring is back after shutdown
