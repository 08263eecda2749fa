"""Security headers on every response, and the CSP nonce for the console's inline scripts.

A fresh nonce per request is put in ``scope["state"]["csp_nonce"]`` (``request.state.csp_nonce``
in a view); a template writes ``<script nonce="{{ request.state.csp_nonce }}">``. Scripts
without it do not run: the policy has no ``'unsafe-inline'``.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.api_security.csrf import SESSION_COOKIE
from aayu_accounts.api_security.responses import bearer_token, cookie, header, send_problem
from aayu_accounts.errors import error_for_unexpected

PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=()"
)
# FastAPI's interactive docs load Swagger UI / ReDoc from a CDN with an inline bootstrap
# script; only those pages get a policy that allows it.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CDN = "https://cdn.jsdelivr.net"


def content_security_policy(nonce: str, path: str) -> str:
    if path.startswith(DOCS_PATHS):
        return (
            f"default-src 'self'; script-src 'self' 'unsafe-inline' {DOCS_CDN}; "
            f"style-src 'self' 'unsafe-inline' {DOCS_CDN}; img-src 'self' data: "
            "https://fastapi.tiangolo.com; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )


# The fixed headers as raw (name, value) pairs, built once: each is added unless the response
# set its own.
_FIXED: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", PERMISSIONS_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def add_security_headers(
    message: Message, csp: str, hsts: bytes | None, authenticated: bool
) -> None:
    """Add the headers to an ``http.response.start`` message, in place, on its raw list."""
    raw = message.get("headers")
    raw = list(raw) if raw is not None else []
    present = {name.lower() for name, _ in raw}
    if b"content-security-policy" not in present:
        raw.append((b"content-security-policy", csp.encode("latin-1")))
    raw.extend(pair for pair in _FIXED if pair[0] not in present)
    if hsts is not None and b"strict-transport-security" not in present:
        raw.append((b"strict-transport-security", hsts))
    if authenticated:
        # Responses for a signed-in caller must not linger in shared or browser caches (a
        # clinic's shared workstation): no-store replaces whatever the route said.
        if b"cache-control" in present:
            raw = [pair for pair in raw if pair[0].lower() != b"cache-control"]
        raw.append((b"cache-control", b"no-store"))
        if b"pragma" not in present:
            raw.append((b"pragma", b"no-cache"))
    message["headers"] = raw


def is_authenticated_request(scope: Scope) -> bool:
    return (
        cookie(scope, SESSION_COOKIE) is not None
        or bearer_token(scope) is not None
        or header(scope, b"x-aayu-signature") is not None
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        app_state = scope["app"].state
        hsts = None
        if not app_state.settings.is_development:
            max_age = app_state.api_security_settings.hsts_max_age_seconds
            hsts = f"max-age={max_age}; includeSubDomains".encode()
        authenticated = is_authenticated_request(scope)
        path = scope["path"]

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                add_security_headers(
                    message, content_security_policy(nonce, path), hsts, authenticated
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Rendered here rather than by the request context outside, so an unexpected 500
            # carries the headers too (the request id is bound already; the log has the trace).
            if started:
                raise
            await send_problem(scope, send_with_headers, error_for_unexpected(exc))
