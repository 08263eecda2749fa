"""Start-up loading: master key from the secret store, key versions from the database."""

from __future__ import annotations

import stat

import httpx
from fastapi import FastAPI

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, get_keyring, keyring_loaded
from aayu_accounts.crypto.keyring.runtime import start_keyring
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
