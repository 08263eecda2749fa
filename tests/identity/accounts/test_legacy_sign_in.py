"""Sign-in of a v2.5 user through the API while NEW_AUTH is off: their v2.5 password works and
opens a session of the identity user they were migrated into; people outside the v2.5 list
are unaffected."""

from __future__ import annotations

import json
from pathlib import Path

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import service as user_service
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import signed_up, strong_password

LEGACY_EMAIL = "dr.mehta@clinic-example.org"
LEGACY_PASSWORD = "scribe-2024"  # what v2.5 users had; the new store's policy is stricter


async def test_v25_user_signs_in_with_the_old_password_while_new_auth_is_off(
    app_with: AppFactory, db: Database, settings: Settings, tmp_path: Path
) -> None:
    credentials = tmp_path / "legacy-users.json"
    credentials.write_text(
        json.dumps(
            {"users": [{"username": "drmehta", "password": LEGACY_PASSWORD, "email": LEGACY_EMAIL}]}
        )
    )
    new_password = strong_password()
    hasher = PasswordHasher.from_settings(settings)
    try:
        async with db.session_scope() as session:
            user = await user_service.create_verified_user(
                session,
                settings=settings,
                hasher=hasher,
                policy=PasswordPolicy.from_settings(settings),
                email=LEGACY_EMAIL,
                password=new_password,
                full_name="Dr Mehta",
                platform_admin=False,
                actor=Actor.system("test"),
            )
            session.add(LegacyUserLink(legacy_subject=legacy_subject("drmehta"), user_id=user.id))
            user_id = user.id
    finally:
        hasher.close()

    async with app_with(legacy_auth_file=credentials) as client:
        legacy = await client.post(
            "/api/v1/auth/login", json={"email": LEGACY_EMAIL, "password": LEGACY_PASSWORD}
        )
        assert legacy.status_code == 200, legacy.text
        assert legacy.json()["user"]["id"] == user_id
        client.cookies.clear()
        # NEW_AUTH is off: the identity store's password is not what is checked for them.
        new = await client.post(
            "/api/v1/auth/login", json={"email": LEGACY_EMAIL, "password": new_password}
        )
        assert new.status_code == 401
        assert new.json()["code"] == "invalid_credentials"
        # Everyone else signs in against the identity store as always.
        other = await signed_up(client, db)
        assert other.token
