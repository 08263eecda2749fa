"""Sign-up, email verification, sign-in, /me and sign-out through the API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.auth_session import AuthSession
from aayu_accounts.models.user import User
from tests.identity.accounts.conftest import app_factory
from tests.identity.accounts.helpers import (
    login,
    register,
    signed_up,
    strong_password,
    token_from_email,
    unique_email,
    verify,
)


async def test_register_verify_login_me_logout(client: httpx.AsyncClient, db: Database) -> None:
    account = await register(client)
    # Unverified accounts cannot sign in.
    assert (await login(client, account)).json()["code"] == "invalid_credentials"
    await verify(client, db, account)

    response = await login(client, account)
    assert response.status_code == 200
    body = response.json()
    assert len(body["token"]) >= 43
    assert body["user"]["email"] == account.email
    assert body["user"]["full_name"] == account.full_name
    assert body["user"]["memberships"][0]["role"] == "owner"
    assert body["user"]["memberships"][0]["org_name"] == account.org_name
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("aayu_session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie or "samesite=lax" in session_cookie.lower()
    # Test settings are not development: the cookie is Secure.
    assert "Secure" in session_cookie
    client.cookies.clear()

    auth = {"Authorization": f"Bearer {body['token']}"}
    me = await client.get("/api/v1/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"]
    assert me.json()["mfa_enabled"] is False

    assert (await client.post("/api/v1/auth/logout", headers=auth)).status_code == 204
    after = await client.get("/api/v1/me", headers=auth)
    assert after.status_code == 401
    assert after.json()["code"] == "unauthenticated"


async def test_session_token_is_stored_only_as_its_hash(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    async with db.session_scope(write=False) as session:
        hashes = (await session.scalars(select(AuthSession.token_hash))).all()
    assert account.token not in hashes
    assert all(len(h) == 64 for h in hashes)


async def test_register_answers_the_same_for_a_taken_email_and_notifies_the_owner(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    payload = {
        "email": owner.email,
        "password": strong_password(),
        "full_name": "Someone Else",
        "organization_name": "Other Clinic",
    }
    again = await client.post("/api/v1/auth/register", json=payload)
    fresh = await client.post(
        "/api/v1/auth/register", json={**payload, "email": unique_email("fresh")}
    )
    assert again.status_code == fresh.status_code == 202
    assert again.content == fresh.content == b'{"status":"verification_sent"}'
    notices = await token_from_email_or_none(db, owner.email)
    assert notices == ["verify_email", "account_exists"]
    # The original password still works: nothing about the account changed.
    assert (await login(client, owner)).status_code == 200


async def token_from_email_or_none(db: Database, address: str) -> list[str]:
    from tests.identity.accounts.helpers import emails_to

    return [e.template for e in await emails_to(db, address)]


async def test_weak_passwords_are_refused_with_reasons(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "nurse.joy@clinic-example.org",
            "password": "sunshine1",
            "full_name": "Joy Nurse",
            "organization_name": "Pallet Clinic",
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "password_too_weak"
    codes = {r["code"] for r in body["reasons"]}
    assert "too_short" in codes
    assert "sunshine1" not in response.text  # the refused password is never echoed


async def test_password_containing_the_clinic_name_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": unique_email(),
            "password": "Sunflowerclinic-rules-2026",
            "full_name": "Asha Verma",
            "organization_name": "Sunflower Clinic",
        },
    )
    assert response.status_code == 422
    assert "contains_organization_name" in {r["code"] for r in response.json()["reasons"]}


async def test_malformed_bodies_are_422(client: httpx.AsyncClient) -> None:
    bad_email = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "not-an-email",
            "password": strong_password(),
            "full_name": "A B",
            "organization_name": "C",
        },
    )
    assert bad_email.status_code == 422
    assert bad_email.json()["code"] == "validation_error"
    unknown_field = await client.post(
        "/api/v1/auth/login",
        json={"email": "a@example.org", "password": "x", "remember_me": True},
    )
    assert unknown_field.status_code == 422
    missing = await client.post("/api/v1/auth/verify-email", json={})
    assert missing.status_code == 422


async def test_verification_token_is_single_use(client: httpx.AsyncClient, db: Database) -> None:
    account = await register(client)
    token = await token_from_email(db, account.email, "verify_email")
    first = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert first.status_code == 200
    assert first.json() == {"status": "verified"}
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert again.json()["code"] == "token_invalid"
    wrong = await client.post("/api/v1/auth/verify-email", json={"token": "x" * 43})
    assert wrong.json()["code"] == "token_invalid"


async def test_verification_token_expires_after_24_hours(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await register(client)
    token = await token_from_email(db, account.email, "verify_email")
    frozen_clock.advance(timedelta(hours=24, seconds=1))
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 400
    assert response.json()["code"] == "token_invalid"


async def test_sign_in_is_audited_with_reason_but_no_secret(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "Wrong-password-123!"}
    )
    assert wrong.status_code == 401
    async with db.session_scope(write=False) as session:
        rows = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.outcome, AuditEvent.details).where(
                    AuditEvent.action.like("identity:login:%")
                )
            )
        ).all()
    reasons = [(action, outcome, details.get("reason")) for action, outcome, details in rows]
    assert ("identity:login:succeeded", "success", None) in reasons
    assert ("identity:login:failed", "failure", "wrong_password") in reasons
    for _, _, details in rows:
        assert "Wrong-password-123!" not in str(details)
        assert account.email not in str(details)


async def test_concurrent_sign_ups_with_one_address_both_get_202(
    own_database: tuple[AsyncEngine, Settings], keyring: Keyring
) -> None:
    # Two requests racing on one address, committed for real: the unique blind index decides,
    # and the loser still answers 202 (no 500, nothing revealed).
    email = unique_email("race")
    payload = {
        "email": email,
        "password": strong_password(),
        "full_name": "Race Person",
        "organization_name": "Race Clinic",
    }
    engine, own_settings = own_database
    own_db = Database(engine)
    async with app_factory(own_settings, own_db, keyring)() as client:
        first, second = await asyncio.gather(
            client.post("/api/v1/auth/register", json=payload),
            client.post("/api/v1/auth/register", json=payload),
        )
    assert first.status_code == second.status_code == 202
    async with own_db.session_scope(write=False) as session:
        users = await session.scalar(
            select(func.count()).select_from(User).where(User.email.matches(email))
        )
    assert users == 1


async def test_logout_without_a_session_is_204_and_garbage_tokens_are_401(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/api/v1/auth/logout")).status_code == 204
    for header in ("Bearer ", "Bearer not-a-token", "Basic abc", "Bearer " + "x" * 5000):
        response = await client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"
