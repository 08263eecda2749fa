"""TOTP enrollment, the MFA sign-in step, replay refusal, recovery codes, disabling."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pyotp

from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from tests.identity.accounts.helpers import Account, emails_to, login, signed_up, totp_now


async def _enroll(client: httpx.AsyncClient, account: Account) -> tuple[str, list[str]]:
    start = await client.post("/api/v1/me/mfa/totp", headers=account.auth)
    assert start.status_code == 200, start.text
    body = start.json()
    secret = body["secret"]
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert body["qr_svg"].lstrip().startswith("<svg")
    confirm = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": totp_now(secret)}, headers=account.auth
    )
    assert confirm.status_code == 200, confirm.text
    codes = confirm.json()["recovery_codes"]
    # The session token rotated at the privilege change; the old one no longer works.
    new_token = confirm.json()["token"]
    assert new_token
    assert new_token != account.token
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 401
    account.token = new_token
    client.cookies.clear()
    return secret, codes


async def test_enroll_then_sign_in_with_totp_once(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    secret, codes = await _enroll(client, account)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    me = await client.get("/api/v1/me", headers=account.auth)
    assert me.json()["mfa_enabled"] is True
    assert "mfa_changed" in [e.template for e in await emails_to(db, account.email)]

    frozen_clock.advance(timedelta(seconds=30))
    step = await login(client, account)
    assert step.status_code == 200
    assert step.json()["mfa_required"] is True
    assert "token" not in step.json()
    mfa_token = step.json()["mfa_token"]

    code = totp_now(secret)
    ok = await client.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "code": code})
    assert ok.status_code == 200, ok.text
    assert ok.json()["token"]
    client.cookies.clear()

    # The same code again (a new sign-in within the same 30 s): refused as a replay.
    step2 = await login(client, account)
    replay = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": step2.json()["mfa_token"], "code": code}
    )
    assert replay.status_code == 401
    assert replay.json()["code"] == "mfa_invalid"
    # The mfa_token of a completed step cannot be used twice either.
    frozen_clock.advance(timedelta(seconds=30))
    used = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": mfa_token, "code": totp_now(secret)}
    )
    assert used.json()["code"] == "mfa_invalid"


async def test_recovery_code_works_once(client: httpx.AsyncClient, db: Database) -> None:
    account = await signed_up(client, db)
    _, codes = await _enroll(client, account)
    step = await login(client, account)
    ok = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": step.json()["mfa_token"], "code": codes[0]}
    )
    assert ok.status_code == 200, ok.text
    client.cookies.clear()
    step = await login(client, account)
    again = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": step.json()["mfa_token"], "code": codes[0]}
    )
    assert again.json()["code"] == "mfa_invalid"
    other = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": step.json()["mfa_token"], "code": codes[1]}
    )
    assert other.status_code == 200


async def test_mfa_step_expires_and_is_throttled(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    secret, _ = await _enroll(client, account)
    frozen_clock.advance(timedelta(seconds=60))
    step = await login(client, account)
    mfa_token = step.json()["mfa_token"]
    for _ in range(5):
        wrong = await client.post(
            "/api/v1/auth/mfa", json={"mfa_token": mfa_token, "code": "000000"}
        )
        assert wrong.json()["code"] == "mfa_invalid"
    blocked = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": mfa_token, "code": totp_now(secret)}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0

    frozen_clock.advance(timedelta(minutes=16))
    step = await login(client, account)
    frozen_clock.advance(timedelta(minutes=6))
    late = await client.post(
        "/api/v1/auth/mfa", json={"mfa_token": step.json()["mfa_token"], "code": totp_now(secret)}
    )
    assert late.json()["code"] == "mfa_invalid"


async def test_confirm_with_a_wrong_code_is_400(client: httpx.AsyncClient, db: Database) -> None:
    account = await signed_up(client, db)
    start = await client.post("/api/v1/me/mfa/totp", headers=account.auth)
    secret = start.json()["secret"]
    wrong_code = pyotp.TOTP(pyotp.random_base32()).now()
    if wrong_code == totp_now(secret):  # one chance in a million
        wrong_code = "000000" if wrong_code != "000000" else "111111"
    response = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": wrong_code}, headers=account.auth
    )
    assert response.status_code == 400
    assert response.json()["code"] == "mfa_invalid"
    assert (await client.get("/api/v1/me", headers=account.auth)).json()["mfa_enabled"] is False


async def test_disable_needs_a_current_code_and_is_refused_where_required(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    secret, _ = await _enroll(client, account)
    frozen_clock.advance(timedelta(seconds=30))
    no_code = await client.request("DELETE", "/api/v1/me/mfa/totp", headers=account.auth)
    assert no_code.status_code == 422
    wrong = await client.request(
        "DELETE", "/api/v1/me/mfa/totp", json={"code": "123456"}, headers=account.auth
    )
    assert wrong.status_code in (400, 429)

    required = await client.patch(
        f"/api/v1/orgs/{account.org_id}", json={"require_mfa": True}, headers=account.auth
    )
    assert required.status_code == 200
    refused = await client.request(
        "DELETE", "/api/v1/me/mfa/totp", json={"code": totp_now(secret)}, headers=account.auth
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "mfa_required_by_org"

    await client.patch(
        f"/api/v1/orgs/{account.org_id}", json={"require_mfa": False}, headers=account.auth
    )
    frozen_clock.advance(timedelta(seconds=30))
    done = await client.request(
        "DELETE", "/api/v1/me/mfa/totp", json={"code": totp_now(secret)}, headers=account.auth
    )
    assert done.status_code == 204, done.text
    assert (await client.get("/api/v1/me", headers=account.auth)).json()["mfa_enabled"] is False
    assert [e.template for e in await emails_to(db, account.email, "mfa_changed")] == [
        "mfa_changed",
        "mfa_changed",
    ]


async def test_clinic_requiring_mfa_sends_members_to_enrollment_first(
    client: httpx.AsyncClient, db: Database
) -> None:
    from tests.identity.accounts.helpers import invite_and_join

    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")
    secret, _ = await _enroll(client, owner)
    assert (
        await client.patch(
            f"/api/v1/orgs/{owner.org_id}", json={"require_mfa": True}, headers=owner.auth
        )
    ).status_code == 200

    # The member's existing session is sent to enrollment at once (cache invalidated).
    blocked = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=member.auth)
    assert blocked.status_code == 403
    assert blocked.json()["code"] == "mfa_enrollment_required"
    me = await client.get("/api/v1/me", headers=member.auth)
    assert me.status_code == 200
    assert me.json()["required_actions"] == ["mfa_enrollment"]

    await _enroll(client, member)
    allowed = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=member.auth)
    assert allowed.status_code == 200
    assert allowed.json()["require_mfa"] is True
    assert secret
