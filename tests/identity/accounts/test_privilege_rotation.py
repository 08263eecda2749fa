"""Privilege changes made in the caller's own session rotate its token; the user's other
sessions end. Changes made by someone else (reactivation, like a role change) end all of them.

Covers joining a clinic by invitation while signed in (API with Bearer and with the cookie),
TOTP confirmation's effect on the user's other sessions, a member's reactivation, and the
revocation reaching a second instance through Redis.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.db import Database
from aayu_accounts.identity.auth_session.cookies import SESSION_COOKIE
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.auth_session import AuthSession
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import (
    Account,
    invite_and_join,
    login,
    signed_up,
    token_from_email,
    totp_now,
)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _set_cookie(response: httpx.Response, name: str) -> str | None:
    """The value ``response`` sets for cookie ``name`` (read from the header: httpx keeps
    Secure cookies only over https)."""
    for line in response.headers.get_list("set-cookie"):
        key, _, rest = line.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return None


async def _me_status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/v1/me", headers=_bearer(token))).status_code


async def _second_session(client: httpx.AsyncClient, account: Account) -> str:
    response = await login(client, account)
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return str(response.json()["token"])


async def _invite(client: httpx.AsyncClient, db: Database, owner: Account, invitee: Account) -> str:
    sent = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": invitee.email, "role": "clinician"},
        headers=owner.auth,
    )
    assert sent.status_code == 201, sent.text
    return await token_from_email(db, invitee.email, "invitation")


@dataclass(frozen=True)
class Event:
    actor_id: str | None
    org_id: str | None
    details: dict[str, Any]


async def _events(db: Database, action: AuditAction, target_id: str | None = None) -> list[Event]:
    async with db.session_scope(write=False) as session:
        query = select(AuditEvent).where(AuditEvent.action == action.value)
        if target_id is not None:
            query = query.where(AuditEvent.target_id == target_id)
        found = (await session.scalars(query.order_by(AuditEvent.occurred_at))).all()
        return [Event(e.actor_id, e.org_id, dict(e.details or {})) for e in found]


async def _revoke_reason(db: Database, token: str) -> str | None:
    async with db.session_scope(write=False) as session:
        found = await session.scalar(
            select(AuthSession).where(AuthSession.token_hash == hash_token(token))
        )
        assert found is not None
        return found.revoke_reason


async def test_joining_a_clinic_signed_in_rotates_the_bearer_token(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    joiner = await signed_up(client, db, org_name="Second Clinic")
    elsewhere = await _second_session(client, joiner)  # another device of the same user
    token = await _invite(client, db, owner, joiner)
    for presented in (joiner.token, elsewhere):  # both cached by a first request
        assert await _me_status(client, presented) == 200

    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=joiner.auth
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["created_account"] is False
    new_token = body["token"]
    assert new_token
    assert new_token not in (joiner.token, elsewhere)
    # The cookie is replaced too (browsers), with the same new token.
    assert _set_cookie(accepted, SESSION_COOKIE) == new_token
    client.cookies.clear()

    # No token from before the privilege change works any more; the new one does, and
    # shows the new membership.
    assert await _me_status(client, joiner.token) == 401
    assert await _me_status(client, elsewhere) == 401
    me = await client.get("/api/v1/me", headers=_bearer(new_token))
    assert me.status_code == 200
    roles = {m["org_id"]: m["role"] for m in me.json()["memberships"]}
    assert roles == {joiner.org_id: "owner", owner.org_id: "clinician"}
    clinic = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=_bearer(new_token))
    assert clinic.status_code == 200
    assert await _revoke_reason(db, joiner.token) == "rotated"
    assert await _revoke_reason(db, elsewhere) == "membership_added"

    [event] = await _events(db, AuditAction.INVITATION_ACCEPTED)
    assert event.actor_id == joiner.user_id
    assert event.org_id == owner.org_id
    assert event.details == {
        "role": "clinician",
        "new_account": False,
        "session_rotated": True,
        "other_sessions_revoked": 1,
    }
    assert new_token not in str(event.details)


async def test_joining_a_clinic_with_the_cookie_replaces_the_cookie(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    joiner = await signed_up(client, db, org_name="Second Clinic")
    token = await _invite(client, db, owner, joiner)
    signed_in = await login(client, joiner)
    old, csrf = signed_in.json()["token"], signed_in.cookies["aayu_csrf"]
    client.cookies.clear()
    # httpx keeps Secure cookies only over https; send them as a browser would.
    cookie = {"Cookie": f"{SESSION_COOKIE}={old}; aayu_csrf={csrf}"}
    assert (await client.get("/api/v1/me", headers=cookie)).status_code == 200
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token},
        headers={**cookie, "X-CSRF-Token": csrf},
    )
    assert accepted.status_code == 200, accepted.text
    client.cookies.clear()
    new_token = accepted.json()["token"]
    assert _set_cookie(accepted, SESSION_COOKIE) == new_token != old
    new_csrf = _set_cookie(accepted, "aayu_csrf")
    assert new_csrf
    assert new_csrf != csrf
    assert (await client.get("/api/v1/me", headers=cookie)).status_code == 401
    fresh = {"Cookie": f"{SESSION_COOKIE}={new_token}; aayu_csrf={new_csrf}"}
    me = await client.get("/api/v1/me", headers=fresh)
    assert me.status_code == 200
    assert len(me.json()["memberships"]) == 2


async def test_a_new_account_from_an_invitation_gets_no_session(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    await invite_and_join(client, db, owner, "clinician")
    [event] = await _events(db, AuditAction.INVITATION_ACCEPTED)
    assert event.details["session_rotated"] is False
    assert event.details["other_sessions_revoked"] == 0


async def test_totp_confirmation_ends_the_users_other_sessions(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A session signed in with the password alone does not outlive the enrollment (in a
    clinic that requires MFA it would otherwise be let in once the required action is gone)."""
    account = await signed_up(client, db)
    elsewhere = await _second_session(client, account)
    assert await _me_status(client, elsewhere) == 200
    start = await client.post("/api/v1/me/mfa/totp", headers=account.auth)
    assert start.status_code == 200, start.text
    confirm = await client.post(
        "/api/v1/me/mfa/totp/confirm",
        json={"code": totp_now(start.json()["secret"])},
        headers=account.auth,
    )
    assert confirm.status_code == 200, confirm.text
    client.cookies.clear()
    new_token = confirm.json()["token"]
    assert await _me_status(client, account.token) == 401
    assert await _me_status(client, elsewhere) == 401
    assert await _me_status(client, new_token) == 200
    assert await _revoke_reason(db, elsewhere) == "mfa_enrolled"
    [event] = await _events(db, AuditAction.MFA_ENROLLED, account.user_id)
    assert event.details["session_rotated"] is True
    assert event.details["other_sessions_revoked"] == 1


async def test_reactivation_ends_the_members_sessions_and_is_audited(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")
    path = f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}"
    off = await client.patch(path, json={"active": False}, headers=owner.auth)
    assert off.status_code == 200, off.text
    # Still an account: the member signs in again while deactivated (no clinic to see).
    while_out = await _second_session(client, member)
    assert await _me_status(client, while_out) == 200
    assert (
        await client.get(f"/api/v1/orgs/{owner.org_id}", headers=_bearer(while_out))
    ).status_code == 404

    on = await client.patch(path, json={"active": True}, headers=owner.auth)
    assert on.status_code == 200, on.text
    # That session was opened without the clinic; it does not gain it.
    assert await _me_status(client, while_out) == 401
    assert await _revoke_reason(db, while_out) == "member_reactivated"
    assert (await client.get("/api/v1/me", headers=owner.auth)).status_code == 200
    fresh = await _second_session(client, member)
    assert (
        await client.get(f"/api/v1/orgs/{owner.org_id}", headers=_bearer(fresh))
    ).status_code == 200
    [event] = await _events(db, AuditAction.MEMBER_REACTIVATED, member.user_id)
    assert event.details == {"sessions_revoked": 1}


async def test_the_rotated_token_ends_on_the_other_instance_too(
    instance: AppFactory, shared_db: Database
) -> None:
    async with instance() as first, instance() as second:
        owner = await signed_up(first, shared_db)
        joiner = await signed_up(first, shared_db, org_name="Second Clinic")
        token = await _invite(first, shared_db, owner, joiner)
        # The second instance caches the joiner's session (without the new membership).
        assert await _me_status(second, joiner.token) == 200
        accepted = await first.post(
            "/api/v1/invitations/accept", json={"token": token}, headers=joiner.auth
        )
        assert accepted.status_code == 200, accepted.text
        first.cookies.clear()
        status = 200
        for _ in range(100):
            status = await _me_status(second, joiner.token)
            if status == 401:
                break
            await asyncio.sleep(0.02)
        assert status == 401
        assert await _me_status(second, accepted.json()["token"]) == 200
