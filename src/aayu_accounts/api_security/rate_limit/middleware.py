"""The API rate limit: 100 requests a minute per signed-in user, else per client IP.

Runs before routing, for every path except the signed service API (each service client has
its own per-second limit, applied once its signature is verified). Route overrides match the
longest path prefix (``AAYU_RATE_LIMIT_ROUTES``); ``"none"`` exempts health probes and the
metrics scraper. A presented session that does not resolve to a live one counts against the
IP, so inventing tokens buys no fresh budget.
"""

from __future__ import annotations

from functools import lru_cache

from limits import RateLimitItem
from starlette.types import ASGIApp, Receive, Scope, Send

from aayu_accounts.api_security.rate_limit.limiter import Decision, parse_limit
from aayu_accounts.api_security.responses import send_problem
from aayu_accounts.api_security.settings import NO_LIMIT
from aayu_accounts.errors import AppError
from aayu_accounts.observability import metrics

SERVICE_PREFIX = "/api/v1/service/"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


def refusal(decision: Decision) -> RateLimited:
    return RateLimited(
        f"Rate limit exceeded; retry in {decision.reset_after} seconds.",
        headers=decision.headers(),
    )


@lru_cache(maxsize=64)
def _parsed(text: str) -> RateLimitItem:
    return parse_limit(text)


def limit_for(path: str, default: str, routes: dict[str, str]) -> tuple[str, RateLimitItem | None]:
    """(the bucket's name, its limit); each override prefix counts in a bucket of its own."""
    best = ""
    for prefix in routes:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    text = routes[best] if best else default
    return best or "*", None if text == NO_LIMIT else _parsed(text)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The merged route table of the settings in force, built once rather than per request.
        self._routes_of: object = None
        self._routes: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SERVICE_PREFIX):
            await self.app(scope, receive, send)
            return
        runtime = scope["app"].state.api_security
        security = runtime.security
        if self._routes_of is not security:
            self._routes, self._routes_of = security.route_limits(), security
        bucket, item = limit_for(scope["path"], security.rate_limit_default, self._routes)
        if item is None:
            await self.app(scope, receive, send)
            return
        user_id = await runtime.resolve_user(scope)
        if user_id is not None:
            scope_name, identity = "user", user_id
        else:
            scope_name, identity = "ip", scope.get("state", {}).get("client_ip") or "unknown"
        decision = await runtime.limiter.hit(item, "api", bucket, scope_name, identity)
        if not decision.allowed:
            metrics.RATE_LIMIT_REFUSALS.labels(scope_name).inc()
            await send_problem(scope, send, refusal(decision))
            return
        await self.app(scope, receive, send)
