"""What every console page shares: who is signed in, the current clinic, CSRF, flash messages,
rendering, redirects and the units of work around service calls.

A view takes one of the context dependencies (``Page``, ``PendingPage``, ``SignedInPage``,
``PlatformAdminPage``), reads its form with :func:`read_form` (which checks the CSRF field),
calls identity/billing/... *services* inside :func:`attempt` (one committed unit of work, or
the service's ``AppError`` back as a value, rolled back) and answers with :func:`render` or
:func:`redirect`. See ``/work/helper-notes/console-skeleton.md`` and ``docs/console.md``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.api_security.csrf import CsrfFailed, csrf_token_for, csrf_token_valid
from aayu_accounts.console.messages import flash_text
from aayu_accounts.console.templating import environment
from aayu_accounts.crypto.keyring import KeyringNotLoaded
from aayu_accounts.db import get_database
from aayu_accounts.errors import AppError, Forbidden
from aayu_accounts.identity.auth_session.cookies import SESSION_COOKIE
from aayu_accounts.identity.auth_session.service import (
    ACTION_ACCEPT_POLICIES,
    ACTION_MFA_ENROLLMENT,
)
from aayu_accounts.identity.deps import Principal, optional_session
from aayu_accounts.identity.membership.service import OrgAccess, resolve_access
from aayu_accounts.identity.permissions import Permission, allowed
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.user import service as user_service

T = TypeVar("T")
M = TypeVar("M")

CONSOLE_MARK = "aayu_console"
ORG_COOKIE = "aayu_org"
FLASH_COOKIE = "aayu_flash"
PRE_SESSION_COOKIE = "aayu_console_pre"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024


class ConsoleRedirect(Exception):
    """Raised by a dependency to send the browser elsewhere (sign-in, required actions)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True)
class Membership:
    org_id: str
    org_name: str
    role: str


@dataclass
class ConsoleContext:
    """The signed-in person as a page sees them (``principal`` is None when anonymous)."""

    principal: Principal | None
    email: str = ""
    full_name: str = ""
    mfa_enabled: bool = False
    memberships: list[Membership] = field(default_factory=list)
    org: Membership | None = None
    idle_timeout_seconds: int | None = None

    @property
    def signed_in(self) -> bool:
        return self.principal is not None

    @property
    def user_id(self) -> str:
        assert self.principal is not None
        return self.principal.user_id

    @property
    def is_platform_admin(self) -> bool:
        return self.principal is not None and self.principal.is_platform_admin

    @property
    def pending_actions(self) -> tuple[str, ...]:
        return self.principal.required_actions if self.principal is not None else ()

    @property
    def role(self) -> str | None:
        return self.org.role if self.org is not None else None

    def can(self, permission: Permission) -> bool:
        """May the caller do this in the current clinic (for showing links and buttons)?
        The service checks again; this only decides what to show."""
        return self.org is not None and allowed(self.org.role, permission)

    def has_role(self, *roles: str) -> bool:
        return self.org is not None and self.org.role in roles


def _safe_next(target: str | None) -> str:
    """Only a local path: never an open redirect."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def safe_next(target: str | None) -> str:
    return _safe_next(target)


async def _load(request: Request) -> ConsoleContext:
    request.state.aayu_console = True
    cached: ConsoleContext | None = getattr(request.state, "console_context", None)
    if cached is not None:
        return cached
    principal = await optional_session(request)
    ctx = ConsoleContext(principal=principal)
    if principal is not None:
        async with get_database(request).session_scope(write=False) as session:
            profile = await user_service.profile(session, principal.user_id)
        ctx.email, ctx.full_name, ctx.mfa_enabled = (
            profile.email,
            profile.full_name,
            profile.mfa_enabled,
        )
        ctx.memberships = [Membership(m.org_id, m.org_name, m.role) for m in profile.memberships]
        chosen = request.query_params.get("org") or request.cookies.get(ORG_COOKIE)
        ctx.org = next((m for m in ctx.memberships if m.org_id == chosen), None) or (
            ctx.memberships[0] if ctx.memberships else None
        )
        entry = get_runtime(request).sessions.get(principal.token_hash)
        if entry is not None:
            ctx.idle_timeout_seconds = entry.idle_timeout_seconds
    request.state.console_context = ctx
    return ctx


def _sign_in_location(request: Request) -> str:
    if request.method != "GET":
        return "/sign-in"  # a form posted after the session ended: no page to come back to
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/sign-in?next=" + quote(here, safe="")


async def any_page(request: Request) -> ConsoleContext:
    """Anyone, signed in or not (sign-in, sign-up, email links)."""
    return await _load(request)


async def pending_page(request: Request) -> ConsoleContext:
    """Signed in, possibly with required actions left (the pages that complete them)."""
    ctx = await _load(request)
    if ctx.principal is None:
        raise ConsoleRedirect(_sign_in_location(request))
    return ctx


async def signed_in_page(request: Request) -> ConsoleContext:
    """Signed in with nothing pending; otherwise off to the required actions."""
    ctx = await pending_page(request)
    if ctx.pending_actions:
        raise ConsoleRedirect("/required-actions")
    return ctx


async def platform_admin_page(request: Request) -> ConsoleContext:
    """A platform administrator who signed in with MFA enabled."""
    ctx = await signed_in_page(request)
    if not ctx.is_platform_admin:
        raise Forbidden("Platform administrators only.")
    if not ctx.mfa_enabled:
        raise Forbidden("Operations need two-factor authentication: enroll under Account.")
    return ctx


Page = Annotated[ConsoleContext, Depends(any_page)]
PendingPage = Annotated[ConsoleContext, Depends(pending_page)]
SignedInPage = Annotated[ConsoleContext, Depends(signed_in_page)]
PlatformAdminPage = Annotated[ConsoleContext, Depends(platform_admin_page)]


def roles_page(*roles: str) -> Callable[[Request], Awaitable[ConsoleContext]]:
    """A dependency: signed in, and the current clinic's role is one of ``roles`` (else 403).

    ``Annotated[ConsoleContext, Depends(roles_page("owner", "billing"))]``
    """

    async def dependency(request: Request) -> ConsoleContext:
        ctx = await signed_in_page(request)
        if not ctx.has_role(*roles):
            raise Forbidden("Your role in this clinic cannot open this page.")
        return ctx

    return dependency


async def org_access(request: Request, ctx: ConsoleContext, permission: Permission) -> OrgAccess:
    """The caller's verified membership of the current clinic with ``permission`` (the same
    check as the API's ``org_access``); raises ``NotFound``/``InsufficientRole``."""
    if ctx.principal is None or ctx.org is None:
        raise Forbidden("You are not a member of a clinic.")
    async with get_database(request).session_scope(write=False) as session:
        access = await resolve_access(
            session, ctx.org.org_id, ctx.principal.user_id, ctx.principal.session_id
        )
    access.require(permission)
    return access


# --- CSRF --------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The hidden form field's value: the session-bound token (equal to the ``aayu_csrf``
    cookie) when signed in, else one bound to a pre-session cookie (login CSRF)."""
    ctx: ConsoleContext | None = getattr(request.state, "console_context", None)
    token = getattr(request.state, "session_token_override", None) or request.cookies.get(
        SESSION_COOKIE
    )
    try:
        if ctx is not None and ctx.principal is not None and token:
            return csrf_token_for(token)
        pre = request.cookies.get(PRE_SESSION_COOKIE) or getattr(
            request.state, "new_pre_session", None
        )
        if not pre:
            pre = secrets.token_urlsafe(24)
            request.state.new_pre_session = pre
        return csrf_token_for("console-pre:" + pre)
    except KeyringNotLoaded:
        return ""


def use_session_token(request: Request, token: str) -> None:
    """The response being built signs in with (or rotates to) ``token``: bind the page's
    CSRF fields to it rather than to the cookie the request came with."""
    request.state.session_token_override = token


def _csrf_ok(request: Request, ctx: ConsoleContext, presented: str) -> bool:
    if not presented:
        return False
    token = request.cookies.get(SESSION_COOKIE)
    if ctx.principal is not None and token:
        return csrf_token_valid(token, presented)
    pre = request.cookies.get(PRE_SESSION_COOKIE)
    return bool(pre) and csrf_token_valid("console-pre:" + str(pre), presented)


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form (first value of each field), after checking its CSRF field.

    Raises ``CsrfFailed`` (403, rendered as the console's error page)."""
    ctx = await _load(request)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise AppError("The form is too large.")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    form = {key: values[0] for key, values in parsed.items()}
    if not _csrf_ok(request, ctx, form.pop(CSRF_FIELD, "")):
        raise CsrfFailed("The form expired or came from another site. Reload the page and retry.")
    return form


# --- units of work -----------------------------------------------------------------------


async def attempt(request: Request, work: Callable[[AsyncSession], Awaitable[T]]) -> T | AppError:
    """Run ``work`` in one unit of work: committed when it returns, rolled back when it raises
    an ``AppError``, which comes back as a value for the page to show next to the form."""
    try:
        async with get_database(request).session_scope() as session:
            return await work(session)
    except AppError as error:
        return error


async def attempt_parsed(
    request: Request, body: M | AppError, work: Callable[[AsyncSession, M], Awaitable[T]]
) -> T | AppError:
    """``attempt`` for a form parsed with ``forms.parse``: a form that did not validate comes
    back as its error without a unit of work; a valid one is handed to ``work``."""
    if isinstance(body, AppError):
        return body
    parsed = body
    return await attempt(request, lambda session: work(session, parsed))


async def read(request: Request, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in a read-only unit of work (errors propagate to the error page)."""
    async with get_database(request).session_scope(write=False) as session:
        return await work(session)


# --- rendering ---------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return not request.app.state.settings.is_development


def page_context(request: Request) -> dict[str, Any]:
    from aayu_accounts.console.nav import nav_items  # noqa: PLC0415 - nav imports this module

    ctx: ConsoleContext = getattr(request.state, "console_context", None) or ConsoleContext(None)
    flash_key = request.cookies.get(FLASH_COOKIE)
    return {
        "request": request,
        "ctx": ctx,
        "nav": nav_items(ctx, request.url.path),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "csp_nonce": getattr(request.state, "csp_nonce", ""),
        "flash": flash_text(flash_key) if flash_key else None,
        "required_actions": {
            "mfa": ACTION_MFA_ENROLLMENT in ctx.pending_actions,
            "policies": ACTION_ACCEPT_POLICIES in ctx.pending_actions,
        },
    }


# The app's default "no-referrer" makes a browser send "Origin: null" with a form's POST,
# which the CSRF middleware must refuse; "same-origin" sends our origin to ourselves only.
CONSOLE_REFERRER_POLICY = "same-origin"


def finish_response(request: Request, response: Response) -> None:
    """What every console answer needs: a referrer policy under which the browser sends the
    form's Origin, the pre-session cookie, a consumed flash removed."""
    response.headers["Referrer-Policy"] = CONSOLE_REFERRER_POLICY
    new_pre = getattr(request.state, "new_pre_session", None)
    if new_pre:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            new_pre,
            path="/",
            httponly=True,
            secure=_secure(request),
            samesite="lax",
        )
    if request.cookies.get(FLASH_COOKIE) and FLASH_COOKIE not in str(
        response.headers.getlist("set-cookie")
    ):
        response.delete_cookie(FLASH_COOKIE, path="/", secure=_secure(request), samesite="lax")


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` with the page context (``ctx``, ``nav``, ``csrf_token``,
    ``csp_nonce``, ``flash``) plus ``context``."""
    values = page_context(request)
    values.update(context or {})
    html = environment().get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code)
    finish_response(request, response)
    return response


def redirect(request: Request, location: str, *, flash: str | None = None) -> Response:
    """303 to ``location`` (``HX-Redirect`` for an htmx request), with an optional flash key
    from ``console/messages.py`` shown once on the next page."""
    location = _safe_next(location)
    response: Response
    if request.headers.get("hx-request"):
        response = Response(status_code=200, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            flash,
            max_age=60,
            path="/",
            httponly=True,
            secure=_secure(request),
            samesite="lax",
        )
    finish_response(request, response)
    return response


def set_org_cookie(request: Request, response: Response, org_id: str) -> None:
    response.set_cookie(
        ORG_COOKIE, org_id, path="/", httponly=True, secure=_secure(request), samesite="lax"
    )
