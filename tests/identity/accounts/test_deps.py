"""The shared dependencies: platform administrators, rotation at sign-in, own-session revoke."""

from __future__ import annotations

import httpx

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import service as user_service
from tests.identity.accounts.helpers import Account, login, signed_up, strong_password


async def test_platform_admin_routes_refuse_clinic_owners(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    owner = await signed_up(client, db)
    admin = Account("root.ops@aayuwell-example.org", strong_password(), "Root Ops", "")
    hasher = PasswordHasher.from_settings(settings)
    try:
        async with db.session_scope() as session:
            await user_service.create_verified_user(
                session,
                settings=settings,
                hasher=hasher,
                policy=PasswordPolicy.from_settings(settings),
                email=admin.email,
                password=admin.password,
                full_name=admin.full_name,
                platform_admin=True,
                actor=Actor.system("test"),
            )
    finally:
        hasher.close()
    signed_in = await login(client, admin)
    assert signed_in.status_code == 200
    admin.token = signed_in.json()["token"]
    client.cookies.clear()

    denied = await client.get("/api/v1/admin/flags", headers=owner.auth)
    assert denied.status_code == 403
    assert denied.json()["code"] == "forbidden"
    assert (await client.get("/api/v1/admin/flags")).status_code == 401
    allowed = await client.get("/api/v1/admin/flags", headers=admin.auth)
    assert allowed.status_code == 200


async def test_signing_in_again_with_a_token_replaces_that_session(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    again = await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers=account.auth,
    )
    assert again.status_code == 200
    client.cookies.clear()
    assert again.json()["token"] != account.token
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 401
    fresh = {"Authorization": f"Bearer {again.json()['token']}"}
    assert (await client.get("/api/v1/me", headers=fresh)).status_code == 200


async def test_revoking_the_current_session_signs_out(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    sessions = (await client.get("/api/v1/me/sessions", headers=account.auth)).json()
    [current] = [s for s in sessions if s["current"]]
    response = await client.delete(f"/api/v1/me/sessions/{current['id']}", headers=account.auth)
    assert response.status_code == 204
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 401
