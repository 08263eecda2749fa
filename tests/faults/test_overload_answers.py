"""Under overload a middleware can meet an open breaker (the rate limiter's Redis, the nonce
store): ``BreakerOpen`` is a 503 ``dependency_unavailable`` wherever it is raised, never a 500.
Found by the load run (bench/load_run.py): 1,000 concurrent sessions on a busy machine got
hundreds of 500s from exactly this before the fix."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from aayu_accounts.errors import error_for_unexpected
from aayu_accounts.kit.asgi import RequestContextMiddleware
from aayu_accounts.kit.resilience import BreakerOpen


def test_an_app_error_from_outside_the_handlers_keeps_its_status() -> None:
    error = error_for_unexpected(BreakerOpen("redis", 3.0))
    assert error.status == 503
    assert error.code == "dependency_unavailable"


class _BreakerInMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raise BreakerOpen("redis", 3.0)
        await self.app(scope, receive, send)


async def test_a_breaker_met_in_a_middleware_answers_503() -> None:
    app = FastAPI()
    app.add_middleware(_BreakerInMiddleware)
    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/anything")
    assert response.status_code == 503
    assert response.json()["code"] == "dependency_unavailable"
