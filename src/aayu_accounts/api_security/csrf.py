"""CSRF protection for cookie-authenticated requests (API.md, *Authentication*).

An unsafe request (POST, PUT, PATCH, DELETE) that carries the ``aayu_session`` cookie passes
when either

* ``X-CSRF-Token`` equals the ``aayu_csrf`` cookie **and** that token is bound to the session:
  ``"{key version}.{base64url HMAC-SHA256(CSRF key, sha256(session token))}"``. Binding
  defeats cookie tossing: a sibling subdomain that can plant an ``aayu_csrf`` cookie still
  cannot compute the token for the victim's session; or
* its ``Origin`` is our own (``AAYU_PUBLIC_URL``'s origin, or the request's own scheme and
  host), which browsers set and pages cannot forge.

Otherwise 403 ``csrf_failed``. Requests with ``Authorization`` (Bearer) and signed service
requests are exempt: a cross-site page cannot attach such headers without a CORS preflight,
which the CORS policy refuses.

Identity sets the CSRF cookie at sign-in; this middleware makes sure its value is the bound
token by rewriting the ``aayu_csrf`` cookie of any response that sets ``aayu_session``, so the
binding holds without identity depending on this (higher) area.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.api_security.responses import bearer_token, cookie, header, send_problem
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.crypto.keyring import KeyPurpose, KeyringNotLoaded, get_keyring
from aayu_accounts.errors import AppError
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)

SESSION_COOKIE = "aayu_session"
CSRF_COOKIE = "aayu_csrf"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SERVICE_PREFIX = "/api/v1/service/"


class CsrfFailed(AppError):
    status = 403
    code = "csrf_failed"
    title = "CSRF check failed"


def _binding(session_token: str) -> bytes:
    return b"aayu-csrf|" + hashlib.sha256(session_token.encode("utf-8")).digest()


def csrf_token_for(session_token: str) -> str:
    """The CSRF token bound to ``session_token`` (what the ``aayu_csrf`` cookie holds).

    Raises ``KeyringNotLoaded`` before start-up.
    """
    version, mac = get_keyring().sign(KeyPurpose.CSRF, _binding(session_token))
    return f"{version}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def csrf_token_valid(session_token: str, presented: str) -> bool:
    version_text, dot, encoded = presented.partition(".")
    if not dot or not version_text.isdigit() or len(encoded) > 64:
        return False
    try:
        mac = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        keyring = get_keyring()
    except (ValueError, KeyringNotLoaded):
        return False
    return keyring.verify(KeyPurpose.CSRF, _binding(session_token), int(version_text), mac)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(scope: Scope, origin: str, public_origin: str | None) -> bool:
    claimed = origin.strip().lower().rstrip("/")
    if public_origin is not None and hmac.compare_digest(claimed, public_origin):
        return True
    host = header(scope, b"host")
    if not host:
        return False
    own = f"{scope.get('scheme', 'http')}://{host}".lower()
    return hmac.compare_digest(claimed, own)


def check(scope: Scope, public_url: str) -> str | None:
    """None when the request may proceed, else the reason it is refused (for the audit)."""
    if scope["method"] in SAFE_METHODS or scope["path"].startswith(SERVICE_PREFIX):
        return None
    session_token = cookie(scope, SESSION_COOKIE)
    if not session_token or bearer_token(scope) is not None:
        return None
    presented = header(scope, CSRF_HEADER)
    cookie_token = cookie(scope, CSRF_COOKIE)
    if presented and cookie_token:
        if hmac.compare_digest(presented.encode(), cookie_token.encode()) and csrf_token_valid(
            session_token, presented
        ):
            return None
        reason = "token_mismatch"
    else:
        reason = "token_missing"
    origin = header(scope, b"origin")
    if origin and origin != "null" and _same_origin(scope, origin, _origin_of(public_url)):
        return None
    return "foreign_origin" if origin else reason


def _session_token_set(set_cookies: Sequence[str]) -> tuple[str, str] | None:
    """(token, the Set-Cookie line) when the response signs someone in."""
    for line in set_cookies:
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(line)
        except Exception:  # noqa: S112 - a cookie we cannot parse is not ours to bind  # nosec B112
            continue
        morsel = parsed.get(SESSION_COOKIE)
        if morsel is not None and morsel.value and morsel["max-age"] != "0":
            return morsel.value, line
    return None


def bind_csrf_cookie(message: Message) -> None:
    """Rewrite (or add) the ``aayu_csrf`` cookie of a response that sets ``aayu_session``."""
    headers = MutableHeaders(scope=message)
    set_cookies = headers.getlist("set-cookie")
    found = _session_token_set(set_cookies)
    if found is None:
        return
    token, session_line = found
    try:
        bound = csrf_token_for(token)
    except KeyringNotLoaded:
        log.warning("csrf.keyring_not_loaded")
        return
    # The CSRF cookie lives exactly as long as the session cookie, with the same flags
    # except HttpOnly: the page's script must read it.
    attributes = [
        part.strip()
        for part in session_line.split(";")[1:]
        if part.strip() and part.strip().lower() != "httponly"
    ]
    replacement = "; ".join([f"{CSRF_COOKIE}={bound}", *attributes])
    kept = [line for line in set_cookies if not line.lstrip().startswith(f"{CSRF_COOKIE}=")]
    del headers["set-cookie"]
    for line in kept:
        headers.append("set-cookie", line)
    headers.append("set-cookie", replacement)


class CsrfMiddleware:
    """Refuses cross-site unsafe requests riding on the session cookie (403 ``csrf_failed``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        reason = check(scope, state.settings.public_url)
        if reason is not None:
            metrics.SUSPICIOUS_EVENTS.labels("csrf_failure").inc()
            await _audit_refusal(scope, reason)
            await send_problem(
                scope,
                send,
                CsrfFailed(
                    "Unsafe requests signed in by cookie need the X-CSRF-Token header "
                    "(the aayu_csrf cookie's value) or a same-origin Origin."
                ),
            )
            return

        async def send_bound(message: Message) -> None:
            # Only a response that sets cookies can sign someone in; the scan of the raw list
            # spares every other response the header parsing.
            if message["type"] == "http.response.start" and any(
                name.lower() == b"set-cookie" for name, _ in message.get("headers") or ()
            ):
                bind_csrf_cookie(message)
            await send(message)

        await self.app(scope, receive, send_bound)


async def _audit_refusal(scope: Scope, reason: str) -> None:
    try:
        async with scope["app"].state.db.session_scope() as session:
            await record(
                session,
                AuditAction.CSRF_FAILED,
                actor=Actor.anonymous(),
                outcome="denied",
                details={"reason": reason, "method": scope["method"], "path": scope["path"][:200]},
            )
    except Exception as exc:  # the refusal stands even if it cannot be recorded
        # The type only, no trace: a database error may carry the statement's parameters.
        log.error("csrf.audit_failed", error=type(exc).__name__)  # noqa: TRY400
