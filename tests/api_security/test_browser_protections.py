"""Security headers, CORS, CSRF, the API rate limit, the body limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from aayu_accounts.api_security.csrf import csrf_token_for, csrf_token_valid
from aayu_accounts.api_security.headers import content_security_policy
from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.config import Environment, Settings
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from tests.api_security.conftest import SigningClient, create_client
from tests.identity.accounts.helpers import Account, login, register, verify

ALLOWED = "https://scribe.aayuwell.example"
FOREIGN = "https://evil.example"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"argon2_memory_kib": 1024, "argon2_time_cost": 1})


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # HTTPS: outside development the session cookie is Secure and is not sent over http.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def cookie_sign_in(client: httpx.AsyncClient, db: Database) -> Account:
    account = await register(client)
    await verify(client, db, account)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    account.token = response.json()["token"]
    assert client.cookies.get("aayu_session") == account.token
    return account


# --- headers ---------------------------------------------------------------------------


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/health"),
        await client.get("/no-such-page"),
        await client.post("/api/v1/service/flags/evaluate", json={}),  # a refusal
    ):
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert "script-src 'self' 'nonce-" in csp
        assert "object-src 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert "camera=()" in headers["Permissions-Policy"]
        assert headers["Strict-Transport-Security"].startswith("max-age=")  # env is "test"
        assert "X-Request-ID" in headers


async def test_each_response_gets_its_own_csp_nonce(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health")).headers["Content-Security-Policy"]
    second = (await client.get("/health")).headers["Content-Security-Policy"]
    assert first != second
    assert content_security_policy("abc", "/console").count("'nonce-abc'") == 2


async def test_no_hsts_in_development(settings: Settings, db: Database) -> None:
    from asgi_lifespan import LifespanManager

    from aayu_accounts.app import create_app

    dev = create_app(settings.model_copy(update={"env": Environment.DEVELOPMENT}), database=db)
    async with LifespanManager(dev):
        transport = httpx.ASGITransport(app=dev, client=("127.0.0.1", 40001))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            response = await c.get("/health")
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_authenticated_responses_are_not_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await cookie_sign_in(client, db)
    client.cookies.clear()
    anonymous = await client.get("/health")
    assert anonymous.headers.get("Cache-Control") != "no-store"
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {account.token}"})
    assert me.status_code == 200
    assert me.headers["Cache-Control"] == "no-store"
    # The session cookie and a signed service request are authenticated too.
    client.cookies.set("aayu_session", account.token)
    by_cookie = await client.get("/api/v1/me")
    assert by_cookie.status_code == 200
    assert by_cookie.headers["Cache-Control"] == "no-store"
    client.cookies.clear()
    signer = SigningClient(client, await create_client(db, "no-store-check"))
    signed = await signer.post("/api/v1/service/flags/evaluate", {})
    assert signed.status_code == 200, signed.text
    assert signed.headers["Cache-Control"] == "no-store"


# --- CORS ------------------------------------------------------------------------------


async def test_cors_denies_an_unknown_origin_and_allows_the_configured_one(
    settings: Settings, db: Database
) -> None:
    from asgi_lifespan import LifespanManager

    from aayu_accounts.app import create_app

    application = create_app(settings, database=db)
    application.state.api_security_settings = ApiSecuritySettings(cors_origins=[ALLOWED])
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40002))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            preflight = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-csrf-token",
            }
            denied = await c.options("/api/v1/me", headers={"Origin": FOREIGN, **preflight})
            allowed = await c.options("/api/v1/me", headers={"Origin": ALLOWED, **preflight})
            simple_foreign = await c.get("/health", headers={"Origin": FOREIGN})
            simple_allowed = await c.get("/health", headers={"Origin": ALLOWED})
    assert denied.status_code == 403
    assert denied.json()["code"] == "cors_origin_denied"
    assert "access-control-allow-origin" not in denied.headers
    assert "access-control-allow-credentials" not in denied.headers
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in simple_foreign.headers
    assert simple_allowed.headers["access-control-allow-origin"] == ALLOWED


async def test_cors_with_no_configuration_denies_everyone(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/me",
        headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_a_wildcard_origin_is_refused_in_configuration() -> None:
    with pytest.raises(ValueError, match="explicit"):
        ApiSecuritySettings(cors_origins=["*"])


# --- CSRF ------------------------------------------------------------------------------


async def test_cookie_request_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    await cookie_sign_in(client, db)
    refused = await client.post("/api/v1/auth/logout", headers={"Origin": FOREIGN})
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    without_anything = await client.post("/api/v1/auth/logout")
    assert without_anything.status_code == 403
    assert without_anything.json()["code"] == "csrf_failed"
    # Still signed in: the refused requests did nothing.
    assert (await client.get("/api/v1/me")).status_code == 200
    async with db.session_scope(write=False) as session:
        reasons = (
            await session.scalars(
                select(AuditEvent.details).where(AuditEvent.action == "api_security:csrf:failed")
            )
        ).all()
    assert {d["reason"] for d in reasons} >= {"foreign_origin", "token_missing"}


async def test_the_csrf_cookie_is_bound_to_the_session(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await cookie_sign_in(client, db)
    token = client.cookies.get("aayu_csrf")
    assert token is not None
    assert csrf_token_valid(account.token, token)
    assert token == csrf_token_for(account.token)
    assert not csrf_token_valid("another-session-token", token)


async def test_a_planted_unbound_csrf_cookie_does_not_pass(
    client: httpx.AsyncClient, db: Database
) -> None:
    await cookie_sign_in(client, db)
    client.cookies.set("aayu_csrf", "1.planted-by-a-sibling-subdomain")
    refused = await client.post(
        "/api/v1/auth/logout", headers={"X-CSRF-Token": "1.planted-by-a-sibling-subdomain"}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"


async def test_the_double_submitted_token_passes(client: httpx.AsyncClient, db: Database) -> None:
    await cookie_sign_in(client, db)
    token = client.cookies.get("aayu_csrf")
    assert token is not None
    response = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 204


async def test_a_same_origin_request_passes(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await cookie_sign_in(client, db)
    response = await client.post("/api/v1/auth/logout", headers={"Origin": settings.public_url})
    assert response.status_code == 204


async def test_bearer_requests_need_no_csrf_token(client: httpx.AsyncClient, db: Database) -> None:
    account = await cookie_sign_in(client, db)
    client.cookies.clear()
    response = await client.post(
        "/api/v1/auth/logout",
        headers={"Authorization": f"Bearer {account.token}", "Origin": FOREIGN},
    )
    assert response.status_code == 204


# --- limits ----------------------------------------------------------------------------


async def test_anonymous_callers_are_limited_per_ip_with_headers(
    settings: Settings, db: Database
) -> None:
    from asgi_lifespan import LifespanManager

    from aayu_accounts.app import create_app

    application = create_app(settings, database=db)
    application.state.api_security_settings = ApiSecuritySettings(rate_limit_default="5/minute")
    async with LifespanManager(application):
        one = httpx.ASGITransport(app=application, client=("10.0.0.1", 40003))
        other = httpx.ASGITransport(app=application, client=("10.0.0.2", 40004))
        async with (
            httpx.AsyncClient(transport=one, base_url="https://t") as first,
            httpx.AsyncClient(transport=other, base_url="https://t") as second,
        ):
            statuses = [(await first.get("/api/v1/plans")).status_code for _ in range(5)]
            limited = await first.get("/api/v1/plans")
            other_ip = await second.get("/api/v1/auth/captcha")
            health = [(await first.get("/health")).status_code for _ in range(8)]
    assert 429 not in statuses
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["RateLimit-Limit"] == "5"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["RateLimit-Reset"]) <= 60
    assert limited.headers["Retry-After"] == limited.headers["RateLimit-Reset"]
    assert other_ip.status_code != 429
    assert set(health) == {200}  # probes are exempt


async def test_signed_in_users_are_limited_per_user_not_per_ip(
    settings: Settings, db: Database
) -> None:
    from asgi_lifespan import LifespanManager

    from aayu_accounts.app import create_app

    application = create_app(settings, database=db)
    application.state.api_security_settings = ApiSecuritySettings(
        rate_limit_default="4/minute", rate_limit_routes={"/api/v1/auth/": "100/minute"}
    )
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("10.0.0.9", 40005))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            account = await cookie_sign_in(c, db)
            c.cookies.clear()
            auth = {"Authorization": f"Bearer {account.token}"}
            statuses = [(await c.get("/api/v1/me", headers=auth)).status_code for _ in range(5)]
            # The same IP without the session still has its own budget.
            anonymous = await c.get("/api/v1/me")
            # An invented token counts against the IP, not a fresh bucket.
            invented = await c.get("/api/v1/me", headers={"Authorization": "Bearer made-up"})
    assert statuses[:4] == [200] * 4
    assert statuses[4] == 429
    assert anonymous.status_code == 401
    assert invented.status_code == 401


async def test_bodies_over_one_mebibyte_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/service/usage",
        content=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_an_unexpected_error_still_carries_the_headers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def explode() -> None:
        raise RuntimeError("an unexpected failure with a secret-looking detail")

    app.add_api_route("/test-only/explode", explode)
    response = await client.get("/test-only/explode")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret-looking" not in response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Request-ID" in response.headers


async def test_the_ip_limit_believes_forwarded_for_only_from_trusted_proxies(
    settings: Settings, db: Database
) -> None:
    from asgi_lifespan import LifespanManager

    from aayu_accounts.app import create_app

    application = create_app(
        settings.model_copy(update={"trusted_proxies": ["10.9.0.0/16"]}), database=db
    )
    application.state.api_security_settings = ApiSecuritySettings(rate_limit_default="2/minute")
    async with LifespanManager(application):
        proxy = httpx.ASGITransport(app=application, client=("10.9.0.5", 40010))
        stranger = httpx.ASGITransport(app=application, client=("203.0.113.7", 40011))
        async with (
            httpx.AsyncClient(transport=proxy, base_url="https://t") as via_proxy,
            httpx.AsyncClient(transport=stranger, base_url="https://t") as direct,
        ):
            # Behind the trusted proxy, two clients are two addresses: separate budgets.
            for client_ip in ("198.51.100.1", "198.51.100.2"):
                codes = [
                    (
                        await via_proxy.get("/api/v1/plans", headers={"X-Forwarded-For": client_ip})
                    ).status_code
                    for _ in range(2)
                ]
                assert 429 not in codes
            # A direct caller cannot buy fresh budgets by inventing X-Forwarded-For.
            spoofed = [
                (
                    await direct.get("/api/v1/plans", headers={"X-Forwarded-For": f"192.0.2.{n}"})
                ).status_code
                for n in range(3)
            ]
    assert spoofed[-1] == 429


@pytest.mark.parametrize(
    "path", ["/api/v1/service/usage", "/api/v1/service/sessions/introspect", "/api/v1/auth/login"]
)
async def test_a_streamed_body_is_refused_before_it_is_read_whole(
    client: httpx.AsyncClient, path: str
) -> None:
    """No Content-Length (chunked): the body is counted as it arrives and the request is
    refused with 413 once it passes 1 MiB, long before the 8 MiB sent here are all read. On the
    service routes the signature check reads the body, so the limit must hold there too."""
    chunk, total = 64 * 1024, 128
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(total):
            sent += 1
            yield b" " * chunk

    response = await client.post(
        path, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["code"] == "payload_too_large"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert sent * chunk <= 1024 * 1024 + 2 * chunk  # stopped at the limit, not at the end
