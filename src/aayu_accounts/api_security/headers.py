"""Security headers on every response, and the CSP nonce for the console's inline scripts.

A fresh nonce per request is put in ``scope["state"]["csp_nonce"]`` (``request.state.csp_nonce``
in a view); a template writes ``<script nonce="{{ request.state.csp_nonce }}">``. Scripts
without it do not run: the policy has no ``'unsafe-inline'``.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
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
        hsts = not app_state.settings.is_development
        max_age = app_state.api_security_settings.hsts_max_age_seconds
        authenticated = is_authenticated_request(scope)
        path = scope["path"]

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", content_security_policy(nonce, path))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
                if hsts:
                    headers.setdefault(
                        "Strict-Transport-Security", f"max-age={max_age}; includeSubDomains"
                    )
                if authenticated:
                    # Responses for a signed-in caller must not linger in shared or browser
                    # caches (a clinic's shared workstation).
                    headers["Cache-Control"] = "no-store"
                    headers.setdefault("Pragma", "no-cache")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Rendered here rather than by the request context outside, so an unexpected 500
            # carries the headers too (the request id is bound already; the log has the trace).
            if started:
                raise
            await send_problem(scope, send_with_headers, error_for_unexpected(exc))
