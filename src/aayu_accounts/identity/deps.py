"""Authentication and authorization dependencies every area uses.

* ``CurrentSession``: any live session (cookie ``aayu_session`` first, then
  ``Authorization: Bearer``), even one whose user still has actions to complete (MFA
  enrollment, accepting new policies). Only the routes that complete those actions, ``/me``
  and sign-out use it.
* ``CurrentUser``: a live session with nothing pending; otherwise 403
  ``mfa_enrollment_required`` or ``policy_acceptance_required``. Use this by default.
* ``OptionalSession``: the session if any, else ``None`` (public routes that behave better
  when signed in).
* ``org_access(Permission.X)``: the caller's active membership of the path's ``{org_id}``;
  a non-member gets 404 ``not_found`` (never 403), a member lacking the permission 403.
* ``PlatformAdmin``: a platform administrator.

Cost: a cached lookup (no database round trip) for most requests; the database sees one
read when the cache misses and one write per session per ``session_touch_seconds`` at most.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from aayu_accounts.db import get_database
from aayu_accounts.errors import PROBLEM_CONTENT_TYPE, Forbidden, Unauthenticated
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cache import Invalidation
from aayu_accounts.identity.auth_session.cookies import SESSION_COOKIE
from aayu_accounts.identity.auth_session.service import (
    ACTION_ACCEPT_POLICIES,
    ACTION_MFA_ENROLLMENT,
)
from aayu_accounts.identity.errors import MfaEnrollmentRequired, PolicyAcceptanceRequired
from aayu_accounts.identity.membership.service import OrgAccess, resolve_access
from aayu_accounts.identity.permissions import Permission
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, user_agent_var
from aayu_accounts.observability import metrics


@dataclass(frozen=True)
class Principal:
    """The signed-in caller, as every endpoint sees it."""

    session_id: str
    user_id: str
    token_hash: str
    is_platform_admin: bool
    mfa_enabled: bool
    expires_at: datetime
    required_actions: tuple[str, ...]
    via: Literal["cookie", "bearer"]


def presented_token(request: Request) -> tuple[str, Literal["cookie", "bearer"]] | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, "cookie"
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    return None


async def _authenticate(request: Request) -> Principal | None:
    presented = presented_token(request)
    if presented is None:
        return None
    token, via = presented
    # Tokens are 43 characters; anything far longer is not ours and not worth hashing.
    if len(token) > 256:
        return None
    token_hash = hash_token(token)
    runtime = get_runtime(request)
    db = get_database(request)
    entry = runtime.sessions.get(token_hash)
    if entry is None:
        loaded_at = runtime.sessions.generation
        async with db.session_scope(write=False) as session:
            entry = await session_service.load_principal(session, runtime.settings, token_hash)
        if entry is None:
            metrics.AUTH_FAILURES.labels("session_unknown").inc()
            return None
        runtime.sessions.put(entry, loaded_at=loaded_at)
    now = clock.now()
    if not session_service.is_live(entry, now):
        metrics.AUTH_FAILURES.labels("session_expired").inc()
        runtime.sessions.apply(Invalidation(token_hashes={token_hash}))
        return None
    entry.last_seen_at = now
    ip, user_agent = client_ip_var.get(), user_agent_var.get()
    stale = (now - entry.last_written_at).total_seconds() >= runtime.settings.session_touch_seconds
    if stale:
        # Coalesced: at most one write per session per interval, never one per request.
        entry.last_written_at = now
        async with db.session_scope() as session:
            await session_service.touch(session, entry, now, ip, user_agent)
    return Principal(
        session_id=entry.session_id,
        user_id=entry.user_id,
        token_hash=token_hash,
        is_platform_admin=entry.is_platform_admin,
        mfa_enabled=entry.mfa_enabled,
        expires_at=entry.expires_at,
        required_actions=entry.required_actions,
        via=via,
    )


async def optional_session(request: Request) -> Principal | None:
    cached: Principal | None = getattr(request.state, "aayu_principal", None)
    if cached is not None:
        return cached
    principal = await _authenticate(request)
    request.state.aayu_principal = principal
    return principal


async def current_session(request: Request) -> Principal:
    principal = await optional_session(request)
    if principal is None:
        raise Unauthenticated("Sign in first.", headers={"WWW-Authenticate": 'Bearer realm="aayu"'})
    return principal


async def current_user(principal: Annotated[Principal, Depends(current_session)]) -> Principal:
    if ACTION_MFA_ENROLLMENT in principal.required_actions:
        raise MfaEnrollmentRequired(
            "Your clinic requires two-factor authentication: enroll at /api/v1/me/mfa/totp."
        )
    if ACTION_ACCEPT_POLICIES in principal.required_actions:
        raise PolicyAcceptanceRequired(
            "Accept the current terms and privacy policy at /api/v1/me/policies."
        )
    return principal


OptionalSession = Annotated[Principal | None, Depends(optional_session)]
CurrentSession = Annotated[Principal, Depends(current_session)]
CurrentUser = Annotated[Principal, Depends(current_user)]


def org_access(permission: Permission) -> Callable[..., Awaitable[OrgAccess]]:
    """A dependency resolving the path's ``org_id`` to the caller's membership.

    Usage: ``access: Annotated[OrgAccess, Depends(org_access(Permission.ORG_READ))]``.
    """

    async def dependency(org_id: str, request: Request, principal: CurrentUser) -> OrgAccess:
        async with get_database(request).session_scope(write=False) as session:
            access = await resolve_access(session, org_id, principal.user_id, principal.session_id)
        access.require(permission)
        return access

    return dependency


async def platform_admin(principal: CurrentUser) -> Principal:
    if not principal.is_platform_admin:
        raise Forbidden("Platform administrators only.")
    return principal


PlatformAdmin = Annotated[Principal, Depends(platform_admin)]

# What a ``PlatformAdmin`` route answers before its own code runs (its router's ``responses``):
# no session 401, a session of anyone else 403, both problem+json.
PLATFORM_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": "Problem (RFC 9457)",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status in (401, 403)
}
