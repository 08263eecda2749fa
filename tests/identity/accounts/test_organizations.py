"""Clinics, members, roles, invitations, policies and the BAA through the API."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from tests.identity.accounts.helpers import (
    Account,
    emails_to,
    invite_and_join,
    login,
    patch_member,
    signed_up,
    strong_password,
    token_from_email,
    unique_email,
)


async def test_member_reads_clinic_and_non_member_gets_404(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    other = await signed_up(client, db, org_name="Another Clinic")
    mine = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=owner.auth)
    assert mine.status_code == 200
    body = mine.json()
    assert body["id"] == owner.org_id
    assert body["name"] == owner.org_name
    assert body["require_mfa"] is False
    assert "created_at" in body

    for path in ("", "/members", "/invitations", f"/members/{owner.user_id}"):
        method = "POST" if path == "/invitations" else "PATCH" if "members/" in path else "GET"
        payload = (
            {"email": unique_email(), "role": "clinician"}
            if method == "POST"
            else {"role": "admin"}
            if method == "PATCH"
            else None
        )
        response = await client.request(
            method, f"/api/v1/orgs/{owner.org_id}{path}", json=payload, headers=other.auth
        )
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    unknown = await client.get("/api/v1/orgs/no-such-org", headers=owner.auth)
    assert unknown.status_code == 404
    assert unknown.content.replace(b"no-such-org", b"X") == (
        await client.get(f"/api/v1/orgs/{other.org_id}", headers=owner.auth)
    ).content.replace(other.org_id.encode(), b"X")
    anonymous = await client.get(f"/api/v1/orgs/{owner.org_id}")
    assert anonymous.status_code == 401


@pytest.mark.parametrize("role", ["clinician", "billing", "auditor"])
async def test_roles_without_management_rights_get_403(
    client: httpx.AsyncClient, db: Database, role: str
) -> None:
    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, role)
    assert (
        await client.get(f"/api/v1/orgs/{owner.org_id}", headers=member.auth)
    ).status_code == 200
    attempts = [
        ("PATCH", "", {"name": "Renamed"}),
        ("GET", "/members", None),
        ("POST", "/invitations", {"email": unique_email(), "role": "clinician"}),
        ("PATCH", f"/members/{owner.user_id}", {"role": "clinician"}),
        ("POST", "/baa", {"version": "2026-01"}),
    ]
    for method, path, payload in attempts:
        response = await client.request(
            method, f"/api/v1/orgs/{owner.org_id}{path}", json=payload, headers=member.auth
        )
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "forbidden"


async def test_admin_manages_but_cannot_touch_owners(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    admin = await invite_and_join(client, db, owner, "admin")
    clinician = await invite_and_join(client, db, owner, "clinician")

    renamed = await client.patch(
        f"/api/v1/orgs/{owner.org_id}", json={"name": "Lotus Clinic West"}, headers=admin.auth
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Lotus Clinic West"

    members = await client.get(f"/api/v1/orgs/{owner.org_id}/members", headers=admin.auth)
    assert members.status_code == 200
    rows = {m["user_id"]: m for m in members.json()}
    assert rows[owner.user_id]["role"] == "owner"
    assert rows[owner.user_id]["email"] == owner.email
    assert rows[clinician.user_id]["full_name"] == clinician.full_name
    assert set(rows[admin.user_id]) == {
        "user_id",
        "email",
        "full_name",
        "role",
        "active",
        "mfa_enabled",
    }

    promoted = await patch_member(client, admin, clinician.user_id, {"role": "billing"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "billing"

    for payload in ({"role": "admin"}, {"active": False}):
        denied = await patch_member(client, admin, owner.user_id, payload)
        assert denied.status_code == 403
    make_owner = await patch_member(client, admin, clinician.user_id, {"role": "owner"})
    assert make_owner.status_code == 403
    not_member = await patch_member(client, admin, "not-a-user", {"role": "admin"})
    assert not_member.status_code == 404
    bad_role = await patch_member(client, admin, clinician.user_id, {"role": "superuser"})
    assert bad_role.status_code == 422


async def test_last_owner_can_be_neither_demoted_nor_deactivated(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    for payload in ({"role": "admin"}, {"active": False}):
        response = await patch_member(client, owner, owner.user_id, payload)
        assert response.status_code == 409
        assert response.json()["code"] == "last_owner"
    second = await invite_and_join(client, db, owner, "owner")
    demoted = await patch_member(client, second, owner.user_id, {"role": "admin"})
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "admin"
    self_demote = await patch_member(client, second, second.user_id, {"role": "clinician"})
    assert self_demote.json()["code"] == "last_owner"


async def test_deactivation_revokes_every_session_at_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")
    second = (await login(client, member)).json()["token"]
    client.cookies.clear()
    for token in (member.token, second):  # both cached by a first request
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
    off = await patch_member(client, owner, member.user_id, {"active": False})
    assert off.status_code == 200
    assert off.json()["active"] is False
    for token in (member.token, second):
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
    # Signed in again, a deactivated member sees the clinic as nonexistent.
    fresh = (await login(client, member)).json()
    client.cookies.clear()
    assert fresh["user"]["memberships"] == []
    clinic = await client.get(
        f"/api/v1/orgs/{owner.org_id}", headers={"Authorization": f"Bearer {fresh['token']}"}
    )
    assert clinic.status_code == 404
    back = await patch_member(client, owner, member.user_id, {"active": True})
    assert back.json()["active"] is True


async def test_role_change_ends_the_members_sessions_and_is_audited(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A privilege change issues no new privileges to old tokens: every session of the member
    (the caller's own too, when they change their own role) ends, and the audit says so."""
    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")
    second = (await login(client, member)).json()["token"]
    client.cookies.clear()
    tokens = (member.token, second)
    for token in tokens:  # both cached by a first request
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
    promoted = await patch_member(client, owner, member.user_id, {"role": "admin"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    for token in tokens:
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
    # The caller's own session is untouched by someone else's role change.
    assert (await client.get("/api/v1/me", headers=owner.auth)).status_code == 200
    fresh = (await login(client, member)).json()
    client.cookies.clear()
    assert fresh["user"]["memberships"][0]["role"] == "admin"

    # Changing one's own role is a privilege change too: the caller's token ends with it.
    second_owner = await invite_and_join(client, db, owner, "owner")
    self_demoted = await patch_member(client, second_owner, second_owner.user_id, {"role": "admin"})
    assert self_demoted.status_code == 200
    assert (await client.get("/api/v1/me", headers=second_owner.auth)).status_code == 401
    # A request that changes nothing revokes nothing.
    unchanged = await patch_member(client, owner, member.user_id, {"role": "admin"})
    assert unchanged.status_code == 200
    still = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh['token']}"})
    assert still.status_code == 200

    async with db.session_scope(write=False) as session:
        changes = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == AuditAction.MEMBER_ROLE_CHANGED.value)
                .where(AuditEvent.org_id == owner.org_id)
                .order_by(AuditEvent.occurred_at)
            )
        ).all()
        revoked = {(e.target_id, e.details["new"]): e.details["sessions_revoked"] for e in changes}
    assert revoked == {(member.user_id, "admin"): 2, (second_owner.user_id, "admin"): 1}


async def test_invitation_is_single_use_and_expires(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    owner = await signed_up(client, db)
    email = unique_email("invitee")
    created = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": email, "role": "clinician"},
        headers=owner.auth,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["email"] == email
    assert body["role"] == "clinician"
    sent = await emails_to(db, email, "invitation")
    assert len(sent) == 1
    assert "/accept-invitation?token=" in sent[0].body
    token = await token_from_email(db, email, "invitation")

    weak = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "New Person", "password": "weak"},
    )
    assert weak.json()["code"] == "password_too_weak"
    missing = await client.post("/api/v1/invitations/accept", json={"token": token})
    assert missing.status_code == 422

    password = strong_password()
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "New Person", "password": password},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "clinician"
    assert accepted.json()["created_account"] is True
    reused = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "New Person", "password": password},
    )
    assert reused.status_code == 400
    assert reused.json()["code"] == "token_invalid"
    # The invitee's address is verified by the link: they can sign in at once.
    member = Account(email, password, "New Person", owner.org_name)
    assert (await login(client, member)).status_code == 200
    client.cookies.clear()

    late_email = unique_email("late")
    await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": late_email, "role": "auditor"},
        headers=owner.auth,
    )
    late_token = await token_from_email(db, late_email, "invitation")
    frozen_clock.advance(timedelta(days=7, seconds=1))
    owner_fresh = (await login(client, owner)).json()["token"]
    client.cookies.clear()
    assert owner_fresh
    expired = await client.post(
        "/api/v1/invitations/accept",
        json={"token": late_token, "full_name": "Late Person", "password": strong_password()},
    )
    assert expired.json()["code"] == "token_invalid"


async def test_signed_in_user_accepts_an_invitation_to_another_clinic(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    other = await signed_up(client, db, org_name="Second Clinic")
    await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": other.email, "role": "admin"},
        headers=owner.auth,
    )
    token = await token_from_email(db, other.email, "invitation")
    # /me is cached for the session now; accepting must show the new membership at once.
    assert len((await client.get("/api/v1/me", headers=other.auth)).json()["memberships"]) == 1
    # Signed out, an existing account must sign in to accept.
    anonymous = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "X Y", "password": strong_password()},
    )
    assert anonymous.status_code == 409
    # Signed in as somebody else: refused.
    wrong_user = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=owner.auth
    )
    assert wrong_user.status_code == 403
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=other.auth
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["created_account"] is False
    # Joining is a privilege change: the token rotated (test_privilege_rotation.py).
    client.cookies.clear()
    assert (await client.get("/api/v1/me", headers=other.auth)).status_code == 401
    other.token = accepted.json()["token"]
    me = await client.get("/api/v1/me", headers=other.auth)
    roles = {m["org_id"]: m["role"] for m in me.json()["memberships"]}
    assert roles == {other.org_id: "owner", owner.org_id: "admin"}


async def test_only_owners_invite_owners_and_members_are_not_reinvited(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    admin = await invite_and_join(client, db, owner, "admin")
    denied = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": unique_email(), "role": "owner"},
        headers=admin.auth,
    )
    assert denied.status_code == 403
    again = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": admin.email, "role": "clinician"},
        headers=owner.auth,
    )
    assert again.status_code == 409
    malformed = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": "nope", "role": "clinician"},
        headers=owner.auth,
    )
    assert malformed.status_code == 422


async def test_owner_records_the_baa(client: httpx.AsyncClient, db: Database) -> None:
    owner = await signed_up(client, db)
    admin = await invite_and_join(client, db, owner, "admin")
    assert (
        await client.post(
            f"/api/v1/orgs/{owner.org_id}/baa", json={"version": "2026-11"}, headers=admin.auth
        )
    ).status_code == 403
    signed = await client.post(
        f"/api/v1/orgs/{owner.org_id}/baa", json={"version": "2026-11"}, headers=owner.auth
    )
    assert signed.status_code == 200
    baa = signed.json()["baa"]
    assert baa["version"] == "2026-11"
    assert baa["signed_by"] == owner.user_id
    assert baa["signed_at"]
    org = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=admin.auth)
    assert org.json()["baa"]["version"] == "2026-11"


async def test_me_shows_role_and_clinic_name_changes_at_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")

    async def my_membership() -> dict[str, str]:
        body = (await client.get("/api/v1/me", headers=member.auth)).json()
        membership: dict[str, str] = body["memberships"][0]
        return membership

    assert (await my_membership())["role"] == "clinician"  # cached from here on
    await patch_member(client, owner, member.user_id, {"role": "auditor"})
    # The role change ended the member's session; signed in again, they see the new role.
    member.token = (await login(client, member)).json()["token"]
    client.cookies.clear()
    assert (await my_membership())["role"] == "auditor"  # cached again
    await client.patch(
        f"/api/v1/orgs/{owner.org_id}", json={"name": "Renamed Clinic"}, headers=owner.auth
    )
    assert (await my_membership())["org_name"] == "Renamed Clinic"
