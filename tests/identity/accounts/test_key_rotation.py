"""After the data and blind-index keys rotate and rows are re-encrypted, everyone signs in."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.field_encryption import ciphertext_key_version
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, install_keyring
from aayu_accounts.crypto.keyring.core import KeyVersion
from aayu_accounts.crypto.keyring.reencrypt import reencrypt_all
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.models import Base
from aayu_accounts.models.user import User
from tests.identity.accounts.helpers import login, signed_up

ROTATED = (KeyPurpose.DATA, KeyPurpose.BLIND_INDEX)


async def test_everyone_signs_in_after_rotation_and_reencryption(
    client: httpx.AsyncClient, db: Database, keyring: Keyring
) -> None:
    accounts = [await signed_up(client, db) for _ in range(3)]

    # A second version of the data and blind-index keys, active now (as after
    # `aayu-accounts keys rotate data` once its activation delay has passed).
    now = clock.now() - timedelta(seconds=1)
    new_versions = [KeyVersion(p, 2, primitives.random_key(), now) for p in ROTATED]
    both = Keyring([*keyring.all_versions(), *new_versions])
    install_keyring(both)
    rewritten = await reencrypt_all(db, both, metadata=Base.metadata)
    assert rewritten >= 2 * len(accounts)  # at least each email and name

    # Retire version 1: only the new keys remain; lookups and decryption must still work.
    only_new = Keyring(
        [k for k in both.all_versions() if k.purpose not in ROTATED or k.version == 2]
    )
    install_keyring(only_new)
    async with db.session_scope(write=False) as session:
        stored = (await session.scalars(select(User.email_ciphertext))).all()
    assert stored
    assert {ciphertext_key_version(c) for c in stored} == {2}

    for account in accounts:
        response = await login(client, account)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["email"] == account.email
        assert response.json()["user"]["full_name"] == account.full_name
        client.cookies.clear()
