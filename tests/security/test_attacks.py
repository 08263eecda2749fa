"""Attacks through the HTTP API that the identity and API-security suites do not already drive
end to end: CAPTCHA bypass at sign-in, one account attacked from many addresses, session
fixation, and tampering with each signed header of a service request.

Covered elsewhere (not repeated): byte-identical sign-in failures and pair/IP throttling
(tests/identity/accounts/test_login_hardening.py), TOTP and recovery-code replay
(test_mfa_flow.py), single-use reset/verify/invitation tokens (test_recovery_and_sessions.py,
test_signup_and_signin.py, test_organizations.py), CAPTCHA unit attacks
(tests/identity/test_captcha.py), body/path/query tampering, expiry and nonce replay
(tests/api_security/test_signing.py, test_replay_across_processes.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.app import create_app
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from tests.api_security.conftest import create_client
from tests.identity.accounts.helpers import Account, login, solve_captcha
from tests.security.conftest import signed_in

WRONG = "Not-the-password-42!"


async def _fail_three_times(client: httpx.AsyncClient, account: Account) -> None:
    for _ in range(3):
        response = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": WRONG}
        )
        assert response.json()["code"] == "invalid_credentials"


def _decoded(solution: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.b64decode(solution))
    return decoded


def _encoded(payload: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_captcha_bypass_attempts_at_sign_in_are_refused(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_in(client, db)
    await _fail_three_times(client, account)
    first = (await client.get("/api/v1/auth/captcha")).json()
    second = (await client.get("/api/v1/auth/captcha")).json()
    good = _decoded(solve_captcha(first))
    other = _decoded(solve_captcha(second))
    forged = {
        "a guessed number": good | {"number": int(str(good["number"])) + 1},
        "a made-up signature": good | {"signature": "0" * 63 + "1"},
        "another challenge's number": good | {"number": other["number"]},
        "another challenge's signature": good | {"signature": other["signature"]},
        "a later expiry in the salt": good
        | {"salt": str(good["salt"]).replace("expires=", "expires=9")},
    }
    for name, payload in forged.items():
        response = await login(client, account, captcha=_encoded(payload))
        assert response.status_code == 401, name
        assert response.json()["code"] == "captcha_required", name

    # A genuine solution, presented after its challenge expired.
    frozen_clock.advance(timedelta(seconds=301))
    expired = await login(client, account, captcha=_encoded(other))
    assert expired.json()["code"] == "captcha_required"
    # Control: a fresh solution does buy an attempt (and the right password signs in).
    fresh = (await client.get("/api/v1/auth/captcha")).json()
    accepted = await login(client, account, captcha=solve_captcha(fresh))
    assert accepted.status_code == 200, accepted.text
    client.cookies.clear()
    # The solution it used cannot be used again.
    await _fail_three_times(client, account)
    reused = await login(client, account, captcha=solve_captcha(fresh))
    assert reused.json()["code"] == "captcha_required"


@pytest_asyncio.fixture(loop_scope="session")
async def low_account_threshold(
    settings: Settings, db: Database, keyring: Keyring
) -> AsyncIterator[FastAPI]:
    changed = settings.model_copy(update={"login_account_captcha_after": 6})
    application = create_app(changed, database=db, keyring=keyring)
    application.state.api_security_settings = ApiSecuritySettings(
        rate_limit_default="100000/minute"
    )
    async with LifespanManager(application):
        yield application


async def test_one_account_attacked_from_many_addresses_needs_a_captcha_never_a_lock(
    low_account_threshold: FastAPI, db: Database
) -> None:
    app = low_account_threshold
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40300))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        account = await signed_in(c, db)
    codes = []
    for attempt in range(8):  # one failure from each of eight addresses
        transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{attempt + 10}", 40301))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            response = await c.post(
                "/api/v1/auth/login", json={"email": account.email, "password": WRONG}
            )
            codes.append(response.json()["code"])
    assert codes[:6] == ["invalid_credentials"] * 6
    assert codes[6:] == ["captcha_required"] * 2
    # The owner, from yet another address, solves the CAPTCHA and signs in: no lock-out.
    transport = httpx.ASGITransport(app=app, client=("192.0.2.200", 40302))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        challenge = (await c.get("/api/v1/auth/captcha")).json()
        response = await login(c, account, captcha=solve_captcha(challenge))
        assert response.status_code == 200, response.text
    async with db.session_scope(write=False) as session:
        scopes = (
            await session.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.action == "identity:brute_force:detected"
                )
            )
        ).all()
    assert {"scope": "account"} in scopes


async def test_a_planted_session_cookie_is_never_adopted(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    attacker = await signed_in(client, db)
    victim = await signed_in(client, db)
    for planted in ("attacker-chosen-value-0123456789", attacker.token):
        client.cookies.clear()
        client.cookies.set("aayu_session", planted)
        # A browser's same-origin sign-in form (its Origin passes the CSRF check).
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": victim.email, "password": victim.password},
            headers={"Origin": "https://testserver"},
        )
        assert response.status_code == 200
        issued = response.json()["token"]
        assert issued != planted
        assert response.cookies.get("aayu_session") == issued  # the new token, as a cookie
        # The planted value stays what it was: nobody, or the attacker, never the victim.
        client.cookies.clear()
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {planted}"})
        if planted == attacker.token:
            assert me.status_code in (200, 401), me.text
            assert me.status_code == 401 or me.json()["id"] == attacker.user_id
        else:
            assert me.status_code == 401
    # Every sign-in issues a new token, never the previous one again.
    again = (await login(client, victim)).json()["token"]
    client.cookies.clear()
    assert again not in (victim.token, issued)


SIGNED_HEADERS = {
    "timestamp": "X-Aayu-Timestamp",
    "nonce": "X-Aayu-Nonce",
    "key id": "X-Aayu-Key-Id",
    "signature": "X-Aayu-Signature",
}


@pytest.mark.parametrize("part", list(SIGNED_HEADERS))
async def test_changing_any_signed_header_after_signing_is_refused(
    app: FastAPI, client: httpx.AsyncClient, db: Database, part: str
) -> None:
    issued = await create_client(db, "tamper-target")
    other = await create_client(db, "another-backend")
    body = json.dumps({"token": "not-a-session"}).encode()
    path = "/api/v1/service/sessions/introspect"

    def headers() -> dict[str, str]:
        return sign_headers(
            key_id=issued.key_id,
            secret=secret_key(issued.secret),
            method="POST",
            path=path,
            body=body,
            timestamp=clock.unix_now(),
        )

    genuine = await client.post(
        path, content=body, headers={"Content-Type": "application/json", **headers()}
    )
    assert genuine.status_code == 200, genuine.text
    signed = {k.lower(): v for k, v in headers().items()}
    name = SIGNED_HEADERS[part].lower()
    assert name in signed, signed
    value = signed[name]
    if part == "timestamp":
        signed[name] = str(int(value) - 1)
    elif part == "key id":
        signed[name] = other.key_id  # a real client's key, not the one that signed
    else:  # the same length and alphabet, two characters changed
        signed[name] = value[:-2] + ("ab" if not value.endswith("ab") else "cd")
    response = await client.post(
        path, content=body, headers={"Content-Type": "application/json", **signed}
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] in ("signature_invalid", "signature_malformed")
