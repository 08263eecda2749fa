"""Sign-in and the pages around it, through the console (no browser)."""

from __future__ import annotations

import httpx

from aayu_accounts.db import Database
from tests.console.helpers import csrf_of, submit
from tests.identity.accounts.helpers import register, verify


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
