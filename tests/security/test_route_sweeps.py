"""Sweeps generated from the application's route table: every org-scoped route refuses another
clinic's member, every unsafe route refuses a cookie request that fails the CSRF check, and a
revoked session token is refused on every route that takes one.

A route added later is swept without editing this file; the sweeps count what they covered so
a table that silently shrank would fail."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from aayu_accounts.api_security.csrf import csrf_token_for
from aayu_accounts.db import Database
from tests.identity.accounts.helpers import Account
from tests.security.conftest import (
    UNSAFE,
    cookie_signed_in,
    fill_path,
    path_parameters,
    routes,
    signed_in,
)

FOREIGN = "https://evil.example"


def org_scoped(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method, route.path)
        for route in routes(app)
        if "{org_id}" in route.path
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]


async def _call(
    client: httpx.AsyncClient, method: str, path: str, account: Account
) -> httpx.Response:
    """The API with the account's bearer token; the console's pages as its browser would, with
    the session cookie (and the bound CSRF token on a form post)."""
    if path.startswith("/api/"):
        body: dict[str, object] | None = {} if method in UNSAFE else None
        return await client.request(method, path, json=body, headers=account.auth)
    csrf = csrf_token_for(account.token)
    headers = {"Cookie": f"aayu_session={account.token}; aayu_csrf={csrf}", "X-CSRF-Token": csrf}
    if method in UNSAFE:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return await client.request(method, path, content=b"", headers=headers)


def _hidden_code(response: httpx.Response) -> str:
    """The problem code of a 404, or "page" for the console's own not-found page."""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        return str(response.json()["code"])
    return "page"


async def test_every_org_scoped_route_hides_a_clinic_from_another_clinics_member(
    app: FastAPI, client: httpx.AsyncClient, two_clinics: tuple[Account, Account, Account]
) -> None:
    owner_a, member_a, owner_b = two_clinics
    scoped = org_scoped(app)
    assert len(scoped) >= 15, scoped  # the clinic, members, invitations, billing, audit, usage
    answers: dict[tuple[str, str], int] = {}
    hidden_codes: dict[tuple[str, str], str] = {}
    for method, template in scoped:
        values = {"org_id": owner_a.org_id, "user_id": member_a.user_id}
        response = await _call(client, method, fill_path(template, values), owner_b)
        answers[(method, template)] = response.status_code
        # The same answer as a clinic that does not exist: nothing tells them apart.
        unknown = await _call(
            client,
            method,
            fill_path(template, {"org_id": str(uuid.uuid4()), "user_id": member_a.user_id}),
            owner_b,
        )
        assert unknown.status_code == response.status_code, template
        assert owner_a.org_name not in response.text
        if response.status_code == 404:
            hidden_codes[(method, template)] = _hidden_code(response)
            if template.startswith("/api/"):
                assert response.headers["content-type"].startswith("application/problem+json")
            assert _hidden_code(unknown) == hidden_codes[(method, template)]
        elif 300 <= response.status_code < 400 and not template.startswith("/api/"):
            # A console link that sends the caller to their own page whatever clinic it
            # names (/orgs/{org_id}/billing, the emails' link): no oracle, nothing shown.
            location = response.headers["location"]
            assert location == unknown.headers["location"], template
            assert owner_a.org_id not in location
            answers[(method, template)] = 404
    assert {key: code for key, code in answers.items() if code != 404} == {}

    # Control: the rightful owner gets past the access check on each readable route (a 404
    # of its own, such as no_subscription, is fine), so the 404s above are the access check's.
    for method, template in scoped:
        if method != "GET":
            continue
        values = {"org_id": owner_a.org_id, "user_id": member_a.user_id}
        response = await _call(client, method, fill_path(template, values), owner_a)
        if (method, template) in hidden_codes:
            assert response.status_code != 404 or (
                _hidden_code(response) != hidden_codes[(method, template)]
            ), (template, response.text[:300])


async def test_every_unsafe_cookie_route_refuses_a_failed_csrf_check(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    victim = await cookie_signed_in(client, db)
    bound = client.cookies.get("aayu_csrf")
    assert bound is not None
    # A token bound to another session (a second sign-in of another person).
    other_transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    async with httpx.AsyncClient(transport=other_transport, base_url="https://testserver") as c:
        await cookie_signed_in(c, db)
        foreign_token = c.cookies.get("aayu_csrf")
    assert foreign_token is not None
    assert foreign_token != bound

    unsafe = [
        (method, route.path)
        for route in routes(app)
        for method in sorted(route.methods & set(UNSAFE))
        if not route.path.startswith("/api/v1/service/")  # signed, never cookie-authenticated
    ]
    assert len(unsafe) >= 40, unsafe
    attacks: dict[str, tuple[dict[str, str], str | None]] = {
        "no token": ({}, None),
        "wrong token": ({"X-CSRF-Token": "1.d3JvbmctdG9rZW4"}, None),
        "token of another session": ({"X-CSRF-Token": foreign_token}, foreign_token),
        "cross origin": ({"Origin": FOREIGN, "X-CSRF-Token": "1.x"}, None),
        "cross origin, null": ({"Origin": "null"}, None),
    }
    let_through: list[str] = []
    for method, template in unsafe:
        path = fill_path(template, {"org_id": victim.org_id, "user_id": victim.user_id})
        for name, (headers, planted_cookie) in attacks.items():
            cookies = {"aayu_session": victim.token, "aayu_csrf": planted_cookie or bound}
            request = client.build_request(method, path, json={}, headers=headers)
            request.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            response = await client.send(request)
            if response.status_code != 403 or response.json().get("code") != "csrf_failed":
                let_through.append(f"{method} {template} ({name}): {response.status_code}")
    assert let_through == []

    # Control: the bound token gets past the check on the same routes (whatever the route
    # then answers), so the refusals above are the CSRF check's.
    for method, template in unsafe:
        path = fill_path(template, {"org_id": victim.org_id, "user_id": victim.user_id})
        request = client.build_request(method, path, json={}, headers={"X-CSRF-Token": bound})
        request.headers["Cookie"] = f"aayu_session={victim.token}; aayu_csrf={bound}"
        response = await client.send(request)
        is_problem = "json" in response.headers.get("content-type", "")
        assert not (is_problem and response.json().get("code") == "csrf_failed"), template


async def test_a_revoked_session_token_is_refused_on_every_route_that_takes_one(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_in(client, db)
    response = await client.post("/api/v1/auth/logout", headers=account.auth)
    assert response.status_code == 204
    authenticated = [
        (method, route.path)
        for route in routes(app)
        if route.include_in_schema
        and (route.path.startswith(("/api/v1/me", "/api/v1/orgs/", "/api/v1/admin/")))
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]
    assert len(authenticated) >= 30, authenticated
    accepted: list[str] = []
    for method, template in authenticated:
        values = {"org_id": account.org_id, "user_id": account.user_id}
        names = path_parameters(template)
        values.update({name: "k1" for name in names if name == "key"})
        response = await _call(client, method, fill_path(template, values), account)
        if response.status_code != 401 or response.json().get("code") != "unauthenticated":
            accepted.append(f"{method} {template}: {response.status_code} {response.text[:80]}")
    assert accepted == []
    # And as a cookie, and at the service's introspection (tests/api_security covers the
    # signed side): the browser path refuses it the same way.
    client.cookies.set("aayu_session", account.token)
    try:
        assert (await client.get("/api/v1/me")).status_code == 401
    finally:
        client.cookies.clear()
