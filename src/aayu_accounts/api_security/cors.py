"""CORS: deny by default, allow only the configured origins (``AAYU_CORS_ORIGINS``).

Starlette's middleware speaks the protocol for allowed origins; this wrapper builds it from
the app's settings on first use and answers a preflight from any other origin itself with 403
``cors_origin_denied`` and no CORS headers at all. With an explicit list the
``Access-Control-Allow-Origin`` header only ever echoes an allowed origin (never ``*``), so
credentials are allowed for allowlisted origins only; a simple request from another origin
gets no CORS headers, which browsers treat as denial.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.api_security.responses import header, send_problem
from aayu_accounts.errors import AppError

ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]


class CorsOriginDenied(AppError):
    status = 403
    code = "cors_origin_denied"
    title = "Cross-origin request not allowed"


class AllowlistCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None
        self._origins: frozenset[str] = frozenset()

    def _build(self, origins: list[str]) -> ASGIApp:
        self._origins = frozenset(origins)
        return CORSMiddleware(
            self.app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            self._cors = self._build(list(scope["app"].state.api_security_settings.cors_origins))
        origin = header(scope, b"origin")
        if (
            scope["method"] == "OPTIONS"
            and origin is not None
            and header(scope, b"access-control-request-method") is not None
            and origin not in self._origins
        ):
            await send_problem(
                scope, send, CorsOriginDenied(f"The origin {origin[:100]!r} is not allowed.")
            )
            return
        if origin is None:
            # Not a cross-origin request (most API traffic): no CORS headers to work out, only
            # the ``Vary: Origin`` Starlette's middleware would add, so caches keep the
            # answers to different origins apart.
            await self.app(scope, receive, _vary_on_origin(send))
            return
        await self._cors(scope, receive, send)


def _vary_on_origin(send: Send) -> Send:
    async def send_varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = list(message.get("headers") or [])
            varies = [value for name, value in raw if name.lower() == b"vary"]
            if varies:
                raw = [pair for pair in raw if pair[0].lower() != b"vary"]
                raw.append((b"vary", b", ".join([*varies, b"Origin"])))
            else:
                raw.append((b"vary", b"Origin"))
            message["headers"] = raw
        await send(message)

    return send_varying
