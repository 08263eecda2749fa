"""Sign-in and the pages around it, through the console (no browser)."""

from __future__ import annotations

import json
import re
from html import unescape

import httpx
import pytest

from aayu_accounts.db import Database
from tests.console.helpers import csrf_of, page, sign_in, submit
from tests.identity.accounts.helpers import (
    register,
    solve_captcha,
    strong_password,
    token_from_email,
    unique_email,
    verify,
)


async def test_sign_in_page_renders_under_the_strict_csp(console: httpx.AsyncClient) -> None:
    response = await console.get("/sign-in")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "<script>" not in response.text  # every script is an external same-origin file
    assert 'src="/static/vendor/htmx.min.js' in response.text
    assert "http://" not in response.text.replace("https://testserver", "")
    assert "https://" not in response.text
    assert csrf_of(response.text)
    assert "aayu_console_pre" in response.headers.get("set-cookie", "")


async def test_static_files_are_served_from_the_package(console: httpx.AsyncClient) -> None:
    for path in ("/static/console.css", "/static/console.js", "/static/vendor/htmx.min.js"):
        response = await console.get(path)
        assert response.status_code == 200, path


async def test_console_routes_stay_out_of_the_openapi_schema(console: httpx.AsyncClient) -> None:
    paths = (await console.get("/openapi.json")).json()["paths"]
    assert "/sign-in" not in paths
    assert all(p.startswith(("/api/", "/health", "/ready", "/metrics")) for p in paths)


async def test_a_form_without_its_csrf_field_is_refused(console: httpx.AsyncClient) -> None:
    await console.get("/sign-in")
    response = await console.post(
        "/sign-in", data={"email": "a@clinic-example.org", "password": "x" * 12}
    )
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "form expired" in response.text


async def test_wrong_password_shows_the_message(console: httpx.AsyncClient) -> None:
    response = await submit(
        console,
        "/sign-in",
        "/sign-in",
        {"email": "nobody@clinic-example.org", "password": "Wrong-password-123"},
    )
    assert response.status_code == 401
    assert "The email or password is incorrect" in response.text
    assert 'value="nobody@clinic-example.org"' in response.text


async def test_sign_in_sets_the_session_and_shows_the_account(
    console: httpx.AsyncClient, db: Database
) -> None:
    account = await register(console)
    await verify(console, db, account)
    response = await submit(
        console, "/sign-in", "/sign-in", {"email": account.email, "password": account.password}
    )
    assert response.status_code == 303, response.text
    assert "aayu_session" in console.cookies
    assert "aayu_csrf" in console.cookies
    page = await console.get(response.headers["location"])
    while page.status_code == 303:
        page = await console.get(page.headers["location"])
    assert page.status_code == 200
    assert account.email in page.text
    # The form's token is the session-bound CSRF token, the aayu_csrf cookie's value.
    assert csrf_of(page.text) == console.cookies["aayu_csrf"]


async def test_signed_out_visitors_are_sent_to_sign_in(console: httpx.AsyncClient) -> None:
    response = await console.get("/account")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/sign-in?next=")


async def test_sign_up_then_verify_through_the_emailed_link(
    console: httpx.AsyncClient, db: Database
) -> None:
    email = unique_email("signup")
    password = strong_password()
    weak = await submit(
        console,
        "/sign-up",
        "/sign-up",
        {"email": email, "password": "password", "full_name": "A", "organization_name": "B"},
    )
    assert weak.status_code == 422
    assert 'value="A"' in weak.text  # what was typed stays, the password does not
    created = await submit(
        console,
        "/sign-up",
        "/sign-up",
        {
            "email": email,
            "password": password,
            "full_name": "Asha Verma",
            "organization_name": "Lotus Family Clinic",
        },
    )
    assert created.status_code == 303
    assert "Check your inbox" in (await page(console, created.headers["location"])).text
    token = await token_from_email(db, email, "verify_email")
    link = f"/verify-email?token={token}"
    opened = await console.get(link)
    assert opened.status_code == 200  # opening the link changes nothing
    verified = await submit(console, link, "/verify-email", {"token": token})
    assert verified.status_code == 303
    again = await submit(console, link, "/verify-email", {"token": token})
    assert again.status_code == 400
    assert "invalid, already used or expired" in again.text
    assert (await sign_in(console, email, password)).status_code == 303


async def test_password_reset_through_the_emailed_link(
    console: httpx.AsyncClient, db: Database
) -> None:
    account = await register(console)
    await verify(console, db, account)
    asked = await submit(
        console, "/reset-password/request", "/reset-password/request", {"email": account.email}
    )
    assert asked.status_code == 303
    token = await token_from_email(db, account.email, "password_reset")
    link = f"/reset-password?token={token}"
    weak = await submit(console, link, "/reset-password", {"token": token, "new_password": "abc"})
    assert weak.status_code == 422
    new = strong_password()
    done = await submit(console, link, "/reset-password", {"token": token, "new_password": new})
    assert done.status_code == 303
    assert (await sign_in(console, account.email, new)).status_code == 303


async def test_captcha_after_repeated_failures_shows_the_widget(
    console: httpx.AsyncClient, db: Database
) -> None:
    account = await register(console)
    await verify(console, db, account)
    answer = None
    for _ in range(4):
        answer = await sign_in(console, account.email, "Wrong-password-123")
    assert answer is not None
    assert answer.status_code == 401
    assert "<altcha-widget" in answer.text
    assert 'src="/static/vendor/altcha/altcha.js' in answer.text
    found = re.search(r'challengejson="([^"]+)"', answer.text)
    assert found is not None
    challenge = json.loads(unescape(found[1]))
    solved = await submit(
        console,
        "/sign-in",
        "/sign-in",
        {
            "email": account.email,
            "password": account.password,
            "captcha": solve_captcha(challenge),
        },
    )
    assert solved.status_code == 303, solved.text


async def test_console_pages_let_the_browser_send_the_forms_origin(
    console: httpx.AsyncClient,
) -> None:
    """Under the API's "no-referrer" a browser posts forms with "Origin: null", which the CSRF
    middleware refuses; console pages use "same-origin"."""
    response = await console.get("/sign-in")
    assert response.headers["referrer-policy"] == "same-origin"
    assert (await console.get("/health")).headers["referrer-policy"] == "no-referrer"


async def test_an_unexpected_error_on_a_page_answers_the_html_error_page(
    console: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault injected into the service a page reads: the browser gets the console's error
    page (with the security headers), not problem+json, and no detail of the fault."""
    account = await register(console)
    await verify(console, db, account)
    await sign_in(console, account.email, account.password)

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected fault SECRET-DETAIL")

    monkeypatch.setattr("aayu_accounts.identity.user.service.profile", broken)
    response = await console.get("/account")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in response.text
    assert "SECRET-DETAIL" not in response.text
    assert "content-security-policy" in response.headers


def _challenge(html: str) -> dict[str, object]:
    found = re.search(r'challengejson="([^"]+)"', html)
    assert found is not None, "no CAPTCHA on the page"
    challenge: dict[str, object] = json.loads(unescape(found[1]))
    return challenge


async def test_a_locked_sign_in_says_when_to_retry(
    console: httpx.AsyncClient, db: Database
) -> None:
    account = await register(console)
    await verify(console, db, account)
    wrong = {"email": account.email, "password": "Wrong-password-123"}
    answer = None
    for _ in range(3):
        answer = await submit(console, "/sign-in", "/sign-in", wrong)
    assert answer is not None
    # From the third failure on, the page carries the CAPTCHA for the next attempt.
    for _ in range(2):
        solved = solve_captcha(_challenge(answer.text))
        answer = await submit(console, "/sign-in", "/sign-in", {**wrong, "captcha": solved})
    locked = await submit(console, "/sign-in", "/sign-in", {**wrong, "password": account.password})
    assert locked.status_code == 429, locked.text
    assert "Too many attempts" in locked.text
    assert "Try again in 15 minutes." in locked.text
