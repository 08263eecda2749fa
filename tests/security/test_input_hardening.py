"""Hostile input: deeply nested and oversized bodies, NUL characters, header injection through
reflected values (sign-in's ``next``, the request id), a forged Host header, and
X-Forwarded-For from a peer that is not a trusted proxy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from tests.identity.accounts.helpers import emails_to, register
from tests.security.conftest import signed_in

ONE_MIB = 1024 * 1024


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/service/usage"]
)
async def test_deeply_nested_json_is_a_client_error(
    client: httpx.AsyncClient, path: str, depth: int
) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        # Streamed: tests/audit/sweep.py reads sized request bodies with json.loads, which
        # itself overflows the stack on these (the server must not).
        response = await client.post(
            path, content=_streamed(body), headers={"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, response.text[:300]
        assert response.headers["content-type"].startswith("application/problem+json")
        assert len(response.content) < 10_000  # the input is not echoed back


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def test_a_streamed_body_without_length_is_cut_at_the_limit(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    response = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize("length", [ONE_MIB + 1, 8 * ONE_MIB])
async def test_a_declared_oversized_body_is_refused(client: httpx.AsyncClient, length: int) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"{" + b" " * (length - 2) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_a_nul_character_in_text_is_refused_not_a_500(
    client: httpx.AsyncClient, db: Database
) -> None:
    # Found by the schemathesis run: PostgreSQL text cannot hold U+0000, and the driver's
    # error surfaced as a 500 (PATCH /orgs/{id}, POST /orgs/{id}/baa, service routes). A value
    # the database cannot store is the request's fault: 422, nothing written.
    owner = await signed_in(client, db)
    response = await client.patch(
        f"/api/v1/orgs/{owner.org_id}", json={"name": "Lotus\x00Clinic"}, headers=owner.auth
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["code"] == "validation_error"
    org = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=owner.auth)
    assert org.status_code == 200  # the session and the clinic survive the refused write


# --- header injection ---------------------------------------------------------------------

CRLF_VALUES = [
    "/account\r\nSet-Cookie: planted=1",
    "/account%0d%0aSet-Cookie:%20planted=1",
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example",
]


@pytest.mark.parametrize("next_value", CRLF_VALUES)
async def test_sign_in_next_never_splits_headers_or_leaves_the_site(
    client: httpx.AsyncClient, db: Database, next_value: str
) -> None:
    page = await client.get("/sign-in", params={"next": next_value})
    assert page.status_code < 500
    assert "planted" not in page.headers.get("set-cookie", "")
    account = await signed_in(client, db)
    response = await client.post(
        "/sign-in",
        params={"next": next_value},
        data={"email": account.email, "password": account.password, "next": next_value},
        headers={"Origin": "https://testserver"},
    )
    assert response.status_code < 500, response.text
    location = response.headers.get("location", "")
    assert "\r" not in location
    assert "\n" not in location
    assert not any("planted" in value for value in response.headers.get_list("set-cookie"))
    # A redirect stays on this site: a path, never another host.
    assert not re.match(r"^(https?:)?[/\\]{2}", location), location
    assert "evil.example" not in location


async def test_a_request_id_from_the_client_is_not_reflected_verbatim_when_hostile(
    client: httpx.AsyncClient,
) -> None:
    hostile = "abc%0d%0aSet-Cookie:x=1<script>" + "A" * 300
    response = await client.get("/health", headers={"X-Request-ID": hostile})
    echoed = response.headers.get("x-request-id", "")
    assert echoed
    assert echoed != hostile
    assert "<" not in echoed
    assert len(echoed) <= 128


async def test_reset_links_use_the_public_url_not_the_host_header(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/auth/password-reset/request",
        json={"email": account.email},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 202
    for email in await emails_to(db, account.email):
        assert "evil.example" not in email.body
    mails = await emails_to(db, account.email, "password_reset")
    assert mails
    assert settings.public_url.rstrip("/") in mails[-1].body


async def test_forwarded_for_from_an_untrusted_peer_is_not_the_client_address(
    app: FastAPI, db: Database
) -> None:
    from sqlalchemy import select

    from aayu_accounts.models.audit_event import AuditEvent

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40100))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        response = await c.post(
            "/api/v1/auth/login",
            json={"email": "nobody@clinic-example.org", "password": "Wrong-password-1!"},
            headers={"X-Forwarded-For": "198.51.100.77"},
        )
    assert response.status_code == 401
    async with db.session_scope(write=False) as session:
        rows = (
            await session.execute(
                select(AuditEvent.ip, AuditEvent.details).where(
                    AuditEvent.action == "identity:login:failed"
                )
            )
        ).all()
    assert rows
    assert {ip for ip, _details in rows} == {"203.0.113.9"}
    assert "198.51.100.77" not in repr(rows)
