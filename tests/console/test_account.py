"""Account pages through the console: MFA enrollment and sign-in with TOTP, password change,
sessions, and the actions required at sign-in."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pyotp
from fastapi import FastAPI
from sqlalchemy import update

from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.user import User
from tests.console.helpers import hidden, page, post, sign_in, submit
from tests.identity.accounts.helpers import (
    Account,
    login,
    register,
    strong_password,
    verify,
)


async def _signed_in(console: httpx.AsyncClient, db: Database) -> Account:
    account = await register(console)
    await verify(console, db, account)
    assert (await sign_in(console, account.email, account.password)).status_code == 303
    return account


async def test_mfa_enrollment_then_sign_in_with_a_code(
    console: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await _signed_in(console, db)
    started = await post(console, "/account/mfa", "/account/mfa/start")
    assert started.status_code == 200
    assert "<svg" in started.text
    secret = hidden(started.text, "secret")
    wrong = await submit(
        console, "/account/mfa", "/account/mfa/confirm", {"secret": secret, "code": "000000"}
    )
    # The enrollment stays pending and the secret is shown again.
    assert wrong.status_code in {400, 401}
    assert "not valid" in wrong.text
    assert secret in wrong.text
    confirmed = await submit(
        console,
        "/account/mfa",
        "/account/mfa/confirm",
        {"secret": secret, "code": pyotp.TOTP(secret).at(frozen_clock.now())},
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = re.findall(r"<li>([A-Za-z0-9-]{8,})</li>", confirmed.text)
    assert len(codes) == 10
    # The session rotated: the page's forms carry the new session's CSRF token.
    assert hidden(confirmed.text, "csrf_token") == console.cookies["aayu_csrf"]
    assert "badge ok" in (await page(console, "/account")).text

    signed_out = await post(console, "/account", "/sign-out")
    assert signed_out.status_code == 303
    assert "aayu_session" not in console.cookies
    step = await sign_in(console, account.email, account.password)
    assert step.status_code == 200
    assert "Two-factor authentication" in step.text
    frozen_clock.advance(timedelta(seconds=30))
    done = await console.post(
        "/sign-in/mfa",
        data={
            "csrf_token": hidden(step.text, "csrf_token"),
            "mfa_token": hidden(step.text, "mfa_token"),
            "next": "/account",
            "code": pyotp.TOTP(secret).at(frozen_clock.now()),
        },
        headers={"Origin": "https://testserver"},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/account"

    # Turning MFA off needs a current code.
    frozen_clock.advance(timedelta(seconds=30))
    off = await post(
        console, "/account", "/account/mfa/disable", code=pyotp.TOTP(secret).at(frozen_clock.now())
    )
    assert off.status_code == 303, off.text
    assert "badge off" in (await page(console, "/account")).text


async def test_a_wrong_mfa_code_at_sign_in_says_so(
    console: httpx.AsyncClient, db: Database
) -> None:
    response = await console.get("/sign-in")
    wrong = await console.post(
        "/sign-in/mfa",
        data={
            "csrf_token": hidden(response.text, "csrf_token"),
            "mfa_token": "x" * 43,
            "code": "123456",
        },
        headers={"Origin": "https://testserver"},
    )
    assert wrong.status_code == 401
    assert "code is not valid" in wrong.text


async def test_password_change_and_its_errors(console: httpx.AsyncClient, db: Database) -> None:
    account = await _signed_in(console, db)
    weak = await post(
        console,
        "/account",
        "/account/password",
        current_password=account.password,
        new_password="password1234",
    )
    assert weak.status_code == 422
    assert "Choose a stronger password" in weak.text
    wrong = await post(
        console,
        "/account",
        "/account/password",
        current_password="Not-the-password-42",
        new_password=strong_password(),
    )
    assert wrong.status_code == 400
    assert "current password is incorrect" in wrong.text
    new = strong_password()
    changed = await post(
        console,
        "/account",
        "/account/password",
        current_password=account.password,
        new_password=new,
    )
    assert changed.status_code == 303
    assert "password is changed" in (await page(console, "/account")).text


async def test_sessions_sign_out_this_one_and_others(
    console: httpx.AsyncClient, db: Database, app: FastAPI
) -> None:
    account = await _signed_in(console, db)
    # Two more sessions of the same user, as from other devices.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        for _ in range(2):
            response = await login(other, account)
            assert response.status_code == 200
            other.cookies.clear()
    listing = await page(console, "/account")
    revoke_paths = re.findall(r'action="(/account/sessions/[^"/]+/revoke)"', listing.text)
    assert len(revoke_paths) == 3
    # The current session is listed first; revoke another one, then all the others.
    one = await post(console, "/account", revoke_paths[1])
    assert one.status_code == 303
    others = await post(console, "/account", "/account/sessions/revoke-others")
    assert others.status_code == 303
    listing = await page(console, "/account")
    assert len(re.findall(r"/account/sessions/[^\"/]+/revoke", listing.text)) == 1
    assert "This session" in listing.text
    own = await post(console, "/account", revoke_paths[0])
    assert own.headers["location"] == "/sign-in"
    assert (await console.get("/account")).status_code == 303


async def test_required_policy_acceptance_at_sign_in(
    console: httpx.AsyncClient, db: Database
) -> None:
    account = await register(console)
    await verify(console, db, account)
    async with db.session_scope() as session:
        await session.execute(update(User).values(terms_version="2000-01-01"))
    landed = await sign_in(console, account.email, account.password)
    assert landed.headers["location"] == "/required-actions"
    blocked = await console.get("/account")
    assert blocked.headers["location"] == "/required-actions"
    unticked = await post(
        console,
        "/required-actions",
        "/required-actions/policies",
        terms_version="x",
        privacy_version="y",
    )
    assert unticked.status_code == 400
    form = await console.get("/required-actions")
    accepted = await submit(
        console,
        "/required-actions",
        "/required-actions/policies",
        {
            "terms_version": hidden(form.text, "terms_version"),
            "privacy_version": hidden(form.text, "privacy_version"),
            "agree": "yes",
        },
    )
    assert accepted.status_code == 303
    assert (await page(console, "/account")).status_code == 200


async def test_idle_timeout_reaches_the_page_and_a_stale_sign_out_still_clears(
    console: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    await _signed_in(console, db)
    account = await page(console, "/account")
    assert 'data-idle-timeout="900"' in account.text  # the session's 15 idle minutes
    assert (await console.get("/session/ping")).json()["ok"] is True
    frozen_clock.advance(timedelta(minutes=16))
    # The page's timer posts the sign-out form; the session ended meanwhile on the server.
    out = await console.post(
        "/sign-out",
        data={"csrf_token": hidden(account.text, "csrf_token"), "idle": "1"},
        headers={"Origin": "https://testserver"},
    )
    assert out.status_code == 303
    assert "aayu_session" not in console.cookies
    assert "period of inactivity" in (await page(console, "/sign-in")).text


async def test_a_form_posted_after_sign_out_goes_to_sign_in(
    console: httpx.AsyncClient, db: Database
) -> None:
    await _signed_in(console, db)
    form = await page(console, "/account")
    await post(console, "/account", "/sign-out")
    late = await console.post(
        "/account/sessions/revoke-others",
        data={"csrf_token": hidden(form.text, "csrf_token")},
        headers={"Origin": "https://testserver"},
    )
    assert late.status_code == 303
    assert late.headers["location"] == "/sign-in"
