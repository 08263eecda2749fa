"""Clinic pages through the console: invite and accept, roles, (de)activation, settings, BAA."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from aayu_accounts.db import Database
from tests.console.helpers import csrf_of, page, post, sign_in, submit
from tests.identity.accounts.helpers import (
    register,
    strong_password,
    token_from_email,
    unique_email,
    verify,
)


async def _owner(console: httpx.AsyncClient, db: Database) -> str:
    account = await register(console)
    await verify(console, db, account)
    assert (await sign_in(console, account.email, account.password)).status_code == 303
    return account.email


def _member_id(html: str, email: str) -> str:
    rows = re.findall(r'<tr id="member-([^"]+)">(.*?)</tr>', html, flags=re.S)
    return str(next(member for member, row in rows if email in row))


async def test_invite_accept_and_manage_a_clinician(
    console: httpx.AsyncClient, db: Database, app: FastAPI
) -> None:
    await _owner(console, db)
    email = unique_email("clinician")
    sent = await post(console, "/clinic", "/clinic/invitations", email=email, role="clinician")
    assert sent.status_code == 303, sent.text
    assert "invitation is sent" in (await page(console, "/clinic")).text
    again = await post(console, "/clinic", "/clinic/invitations", email="not-an-email", role="x")
    assert again.status_code == 422
    assert "Check these fields" in again.text

    token = await token_from_email(db, email, "invitation")
    password = strong_password()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40002))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as invitee:
        link = f"/accept-invitation?token={token}"
        opened = await invitee.get(link)
        assert opened.status_code == 200
        assert "Join the clinic" in opened.text
        accepted = await submit(
            invitee,
            link,
            "/accept-invitation",
            {"token": token, "full_name": "Ravi Kumar", "password": password},
        )
        assert accepted.status_code == 303, accepted.text
        assert (await sign_in(invitee, email, password)).status_code == 303
        clinic = await page(invitee, "/clinic")
        assert clinic.status_code == 200
        assert "Members" not in clinic.text  # a clinician sees the clinic, not its members
        reused = await submit(invitee, link, "/accept-invitation", {"token": token})
        assert reused.status_code == 400
        assert "invalid, already used or expired" in reused.text

    members = await page(console, "/clinic")
    member = _member_id(members.text, email)
    # htmx: the answer is the member's row alone.
    changed = await console.post(
        f"/clinic/members/{member}",
        data={"csrf_token": csrf_of(members.text), "role": "auditor"},
        headers={"HX-Request": "true", "X-CSRF-Token": console.cookies["aayu_csrf"]},
    )
    assert changed.status_code == 200
    assert changed.text.lstrip().startswith(f'<tr id="member-{member}">')
    assert 'value="auditor" selected' in changed.text
    deactivated = await post(console, "/clinic", f"/clinic/members/{member}", active="false")
    assert deactivated.status_code == 303
    assert "Deactivated" in (await page(console, "/clinic")).text
    reactivated = await post(console, "/clinic", f"/clinic/members/{member}", active="true")
    assert reactivated.status_code == 303


async def test_the_last_owner_cannot_step_down(console: httpx.AsyncClient, db: Database) -> None:
    email = await _owner(console, db)
    members = await page(console, "/clinic")
    me = _member_id(members.text, email)
    refused = await post(console, "/clinic", f"/clinic/members/{me}", role="admin")
    assert refused.status_code == 409
    assert "A clinic needs an owner" in refused.text


async def test_settings_and_baa(console: httpx.AsyncClient, db: Database) -> None:
    await _owner(console, db)
    saved = await post(
        console,
        "/clinic",
        "/clinic/settings",
        name="Lotus Clinic North",
        idle_timeout_minutes="10",
    )
    assert saved.status_code == 303, saved.text
    shown = await page(console, "/clinic")
    assert "Lotus Clinic North" in shown.text
    assert 'name="require_mfa" checked' not in shown.text
    assert '<option value="10" selected>' in shown.text
    bad = await post(console, "/clinic", "/clinic/settings", name="x", idle_timeout_minutes="99")
    assert bad.status_code == 422
    recorded = await post(console, "/clinic", "/clinic/baa", version="2026-01")
    assert recorded.status_code == 303
    assert "Version 2026-01" in (await page(console, "/clinic")).text


async def test_require_mfa_sends_members_to_enroll(
    console: httpx.AsyncClient, db: Database
) -> None:
    """Once the clinic requires MFA, a member without it is held at the required actions."""
    await _owner(console, db)
    saved = await post(console, "/clinic", "/clinic/settings", name="Clinic", require_mfa="on")
    assert saved.status_code == 303
    held = await console.get("/clinic")
    assert held.headers["location"] == "/required-actions"
    actions = await page(console, "/required-actions")
    assert "requires two-factor authentication" in actions.text
    assert (await console.get("/account/mfa")).status_code == 200


async def test_a_signed_in_member_of_another_clinic_accepts_and_switches(
    console: httpx.AsyncClient, db: Database, app: FastAPI
) -> None:
    await _owner(console, db)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40003))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        elsewhere = await register(other, org_name="Banyan Clinic")
        await verify(other, db, elsewhere)
        assert (await sign_in(other, elsewhere.email, elsewhere.password)).status_code == 303
        sent = await post(
            console, "/clinic", "/clinic/invitations", email=elsewhere.email, role="admin"
        )
        assert sent.status_code == 303
        token = await token_from_email(db, elsewhere.email, "invitation")
        link = f"/accept-invitation?token={token}"
        opened = await other.get(link)
        assert f"signed in as <strong>{elsewhere.email}</strong>" in opened.text
        before = other.cookies.get("aayu_session")
        accepted = await submit(other, link, "/accept-invitation", {"token": token})
        assert accepted.status_code == 303
        # Joining a clinic is a privilege change: this browser's session token rotated, and
        # the old one is refused.
        after = other.cookies.get("aayu_session")
        assert before
        assert after
        assert after != before
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as bare:
            old = await bare.get("/api/v1/me", headers={"Authorization": f"Bearer {before}"})
            assert old.status_code == 401
        joined = await page(other, accepted.headers["location"])
        assert "Lotus Family Clinic" in joined.text  # the clinic just joined is shown
        assert 'id="org-switch"' in joined.text  # two clinics: the switcher appears
        back = re.search(r'<option value="([^"]+)"[^>]*>Banyan Clinic', joined.text)
        assert back is not None
        switched = await page(other, f"/switch-org?org_id={back[1]}")
        assert "<h1>Banyan Clinic</h1>" in switched.text
