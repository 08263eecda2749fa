"""How API security plugs into the application (called from ``app.py``, the composition root).

Middleware order, outermost first::

    RequestContext -> SecurityHeaders -> BodySizeLimit -> CORS -> RateLimit -> CSRF
        -> SignedRequest -> routes

Headers go on every response: refusals, the early 413 and unexpected 500s included; CORS
answers preflights before they count against a limit; the limit runs before the CSRF check and
the signature verification, and the signature middleware applies each service client's own
limit once the client is known.
"""

from __future__ import annotations

from fastapi import FastAPI

from aayu_accounts.api_security.cors import AllowlistCorsMiddleware
from aayu_accounts.api_security.csrf import CsrfMiddleware
from aayu_accounts.api_security.headers import SecurityHeadersMiddleware
from aayu_accounts.api_security.rate_limit.middleware import RateLimitMiddleware
from aayu_accounts.api_security.request_signing.middleware import SignedRequestMiddleware
from aayu_accounts.api_security.runtime import ApiSecurityRuntime
from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit.asgi import BodySizeLimitMiddleware


def install(app: FastAPI, settings: Settings, security: ApiSecuritySettings | None = None) -> None:
    """Add the middleware up to the security headers, the body-size limit included; the
    composition root adds the request context around it.

    The settings are read from ``app.state.api_security_settings`` when the lifespan starts,
    so a test may replace them after ``create_app`` and before the app starts.
    """
    app.state.api_security_settings = security or ApiSecuritySettings()
    # add_middleware wraps what is there: innermost first.
    app.add_middleware(SignedRequestMiddleware)
    app.add_middleware(CsrfMiddleware)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(AllowlistCorsMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)


def start(app: FastAPI, settings: Settings, db: Database) -> ApiSecurityRuntime:
    runtime = ApiSecurityRuntime.build(settings, app.state.api_security_settings, db)
    app.state.api_security = runtime
    return runtime


async def stop(app: FastAPI) -> None:
    runtime: ApiSecurityRuntime | None = getattr(app.state, "api_security", None)
    if runtime is not None:
        await runtime.close()
