"""CORS: deny by default, allow only the configured origins (``AAYU_CORS_ORIGINS``).

Starlette's middleware does the protocol; this wrapper builds it from the app's settings on
first use, so tests and operators configure it in one place. With an explicit origin list the
``Access-Control-Allow-Origin`` header echoes an allowed origin only (never ``*``), so
credentials are only ever allowed for allowlisted origins; a preflight from any other origin
is refused (400) and a simple request gets no CORS headers, which browsers treat as denial.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]


class AllowlistCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None

    def _build(self, origins: list[str]) -> ASGIApp:
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
        if self._cors is None:
            if scope["type"] not in ("http", "websocket"):
                await self.app(scope, receive, send)
                return
            self._cors = self._build(list(scope["app"].state.api_security_settings.cors_origins))
        await self._cors(scope, receive, send)
