"""What the signed service endpoints answer, from the identity, billing and rollout domains."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.api_security.service_api.schemas import (
    EntitlementResponse,
    IntrospectResponse,
)
from aayu_accounts.billing.entitlement import service as entitlements
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cache import Invalidation
from aayu_accounts.identity.membership import repository as memberships
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, user_agent_var
from aayu_accounts.rollout.flag.snapshot import BILLING, NEW_PATH_FLAGS, FlagSnapshot

INACTIVE = IntrospectResponse(active=False)
# Session tokens are 43 characters; anything far longer is not ours and not worth hashing.
MAX_TOKEN_LENGTH = 256
BILLING_NOT_ENFORCED = "billing_not_enforced"


async def introspect(
    session: AsyncSession, identity: IdentityRuntime, token: str
) -> IntrospectResponse:
    """Whether ``token`` is a live session, and whose.

    Inactive: unknown, revoked, expired (absolute or idle), a deactivated user, or a session
    with actions pending (MFA enrollment or new policies to accept: the console must see the
    user first). An active answer counts as the user's activity, as a console request would:
    the clinician is writing a note in the scribe app.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        return INACTIVE
    token_hash = hash_token(token)
    entry = identity.sessions.get(token_hash)
    if entry is None:
        loaded_at = identity.sessions.generation
        entry = await session_service.load_principal(session, identity.settings, token_hash)
        if entry is None:
            return INACTIVE
        identity.sessions.put(entry, loaded_at=loaded_at)
    now = clock.now()
    if not session_service.is_live(entry, now):
        identity.sessions.apply(Invalidation(token_hashes={token_hash}))
        return INACTIVE
    if entry.required_actions:
        return INACTIVE
    entry.last_seen_at = now
    if (now - entry.last_written_at).total_seconds() >= identity.settings.session_touch_seconds:
        # Coalesced like any other request: one write per session per interval at most.
        entry.last_written_at = now
        await session_service.touch(session, entry, now, client_ip_var.get(), user_agent_var.get())
    org_ids = entry.org_ids
    if org_ids is None:
        # Cached on the principal like ``GET /me``'s profile: every membership change drops
        # the user's entries (``forget_user``), so a warm introspection needs no database.
        orgs = await memberships.memberships_of_user(session, entry.user_id)
        org_ids = tuple(membership.org_id for membership, _org in orgs)
        entry.org_ids = org_ids
    idle_deadline = now + timedelta(seconds=entry.idle_timeout_seconds)
    expires_at: datetime = min(entry.expires_at, idle_deadline)
    return IntrospectResponse(
        active=True,
        user_id=entry.user_id,
        org_ids=list(org_ids),
        mfa=entry.mfa_enabled,
        expires_at=expires_at,
    )


async def check_entitlement(
    session: AsyncSession, flags: FlagSnapshot, *, org_id: str, user_id: str, feature: str
) -> EntitlementResponse:
    """Billing's decision, except while the ``BILLING`` flag is off for this user and clinic:
    billing is not enforced yet, so only membership can refuse (the strategy's rollout must
    not lock clinics out of the scribe the day the endpoint goes live)."""
    decision = await entitlements.check_entitlement(
        session, org_id=org_id, user_id=user_id, feature=feature
    )
    if (
        not decision.allowed
        and decision.reason != "not_a_member"
        and not flags.is_enabled(BILLING, user_id=user_id, org_id=org_id)
    ):
        return EntitlementResponse(allowed=True, reason=BILLING_NOT_ENFORCED)
    return EntitlementResponse(
        allowed=decision.allowed, reason=decision.reason, remaining=decision.remaining
    )


def evaluate_flags(
    snapshot: FlagSnapshot, *, stale: bool, user_id: str | None, org_id: str | None
) -> dict[str, bool]:
    """Every flag for this caller, from the in-process snapshot (no I/O). A snapshot not
    confirmed current within its bound answers "off" for the new-path flags, as the path
    router does: the legacy path is the safe answer."""
    flags = snapshot.evaluate_all(user_id=user_id, org_id=org_id)
    if stale:
        for key in NEW_PATH_FLAGS:
            if key in flags:
                flags[key] = False
    return flags
