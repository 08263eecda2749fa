"""The browser's session cookie and its CSRF companion.

``aayu_session``: HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site
sub-requests or POSTs), Secure everywhere but development (which serves plain HTTP on
loopback). ``aayu_csrf``: readable by the page's script, which echoes it in ``X-CSRF-Token``
on unsafe requests (double submit); a cross-site page can neither read nor set it.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from fastapi import Response

from aayu_accounts.config import Settings
from aayu_accounts.kit import clock

SESSION_COOKIE = "aayu_session"
CSRF_COOKIE = "aayu_csrf"


def set_session_cookies(
    response: Response, settings: Settings, token: str, expires_at: datetime
) -> None:
    max_age = max(0, int((expires_at - clock.now()).total_seconds()))
    secure = not settings.is_development
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="lax",
    )


def clear_session_cookies(response: Response, settings: Settings) -> None:
    secure = not settings.is_development
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="lax")
