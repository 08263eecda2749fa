"""Sign-in of a v2.5 user through the API while NEW_AUTH is off: their v2.5 password works and
opens a session of the identity user they were migrated into; people outside the v2.5 list
are unaffected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.app import create_app
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.identity.user import service as user_service
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import signed_up, strong_password, unique_email

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


async def test_a_v25_user_not_yet_migrated_gets_their_account_at_first_sign_in(
    app_with: AppFactory, db: Database, tmp_path: Path
) -> None:
    # The service took v2.5 traffic before anyone ran `migrate legacy-users`: the first
    # sign-in with the v2.5 password creates the account the command would have created.
    first_time = unique_email("v25first")
    credentials = tmp_path / "legacy-users.json"
    async with app_with() as client:
        existing = await signed_up(client, db)
    users = [
        {
            "username": "drrao",
            "password": LEGACY_PASSWORD,
            "email": first_time,
            "full_name": "Dr Rao",
        },
        {"username": "nomail", "password": LEGACY_PASSWORD},
        {"username": "taken", "password": LEGACY_PASSWORD, "email": existing.email},
    ]
    credentials.write_text(json.dumps({"users": users}))
    created_before = _sign_in_migrations()

    async with app_with(legacy_auth_file=credentials) as client:
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": first_time, "password": "not-the-password"}
        )
        assert wrong.status_code == 401
        assert await _linked_user(db, "drrao") is None  # a wrong password creates nothing

        first = await client.post(
            "/api/v1/auth/login", json={"email": first_time, "password": LEGACY_PASSWORD}
        )
        assert first.status_code == 200, first.text
        user_id = first.json()["user"]["id"]
        client.cookies.clear()
        again = await client.post(
            "/api/v1/auth/login", json={"email": first_time.upper(), "password": LEGACY_PASSWORD}
        )
        assert again.status_code == 200, again.text
        assert again.json()["user"]["id"] == user_id  # the same account, not a second one
        client.cookies.clear()

        # An address another account owns is never linked on a password match: refused.
        refused = await client.post(
            "/api/v1/auth/login", json={"email": existing.email, "password": LEGACY_PASSWORD}
        )
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "invalid_credentials"

    assert await _linked_user(db, "drrao") == user_id
    assert await _linked_user(db, "nomail") is None
    assert await _linked_user(db, "taken") is None
    assert _sign_in_migrations() - created_before == 1
    async with db.session_scope(write=False) as session:
        user = await user_repository.get(session, user_id)
        assert user is not None
        assert user.email == first_time
        assert user.full_name == "Dr Rao"
        assert user.email_verified_at is not None
        assert user.mfa_enrollment_required  # v2.5 had no second factor
        migrated = [
            (e.actor_kind, e.actor_id, e.details)
            for e in await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == AuditAction.LEGACY_USERS_MIGRATED.value,
                    AuditEvent.target_id == user_id,
                )
            )
        ]
    assert migrated == [("system", "legacy-sign-in", {"outcome": "migrated", "via": "sign_in"})]


async def _linked_user(db: Database, username: str) -> str | None:
    async with db.session_scope(write=False) as session:
        link = await session.get(LegacyUserLink, legacy_subject(username))
        return link.user_id if link is not None else None


def _sign_in_migrations() -> float:
    value = REGISTRY.get_sample_value("aayu_legacy_users_migrated_at_sign_in_total")
    return value or 0.0


async def test_two_first_sign_ins_at_once_share_one_account_and_hash_outside_locks(
    own_database: tuple[AsyncEngine, Settings], keyring: Keyring, tmp_path: Path
) -> None:
    # The same v2.5 user signs in from two devices at the same moment, on a database that
    # really commits. Both hash the password before writing (each waits in its hash until
    # the other is in its own: one holding SQLite's write lock or a transaction while hashing
    # would keep the other from ever getting there), then both write: one creates the
    # account, the other finds it, and both open sessions of that one account.
    engine, own_settings = own_database
    own_db = Database(engine)
    email = unique_email("v25twice")
    credentials = tmp_path / "legacy-users.json"
    credentials.write_text(
        json.dumps(
            {"users": [{"username": "drtwice", "password": LEGACY_PASSWORD, "email": email}]}
        )
    )
    application = create_app(
        own_settings.model_copy(update={"legacy_auth_file": credentials}),
        database=own_db,
        keyring=keyring,
    )
    async with LifespanManager(application):
        hasher = application.state.identity.hasher
        real_hash = hasher.hash
        entered = 0
        both_in = asyncio.Event()

        async def hash_together(password: str) -> str:
            nonlocal entered
            entered += 1
            if entered == 2:
                both_in.set()
            await asyncio.wait_for(both_in.wait(), timeout=30)
            return str(await real_hash(password))

        hasher.hash = hash_together
        try:
            responses = await asyncio.gather(
                *(_sign_in_from(application, device, email) for device in (1, 2))
            )
        finally:
            del hasher.hash
    assert entered == 2
    assert [r.status_code for r in responses] == [200, 200], [r.text[:200] for r in responses]
    assert responses[0].json()["user"]["id"] == responses[1].json()["user"]["id"]
    async with own_db.session_scope(write=False) as session:
        accounts = await session.scalar(select(func.count()).select_from(User))
        links = await session.scalar(select(func.count()).select_from(LegacyUserLink))
    assert (accounts, links) == (1, 1)


async def _sign_in_from(application: FastAPI, device: int, email: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=application, client=(f"127.0.0.{device}", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post(
            "/api/v1/auth/login", json={"email": email, "password": LEGACY_PASSWORD}
        )
