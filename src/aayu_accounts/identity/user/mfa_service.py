"""TOTP enrollment, confirmation and removal for the signed-in user.

Enrollment stores the new secret (encrypted) as *pending*; only a correct code moves it to
the active secret and turns MFA on, so a half-finished enrollment never locks anyone out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.identity import mfa
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.service import IssuedSession
from aayu_accounts.identity.errors import (
    MfaAlreadyEnabled,
    MfaCodeInvalid,
    MfaNotEnabled,
    MfaNotEnrolling,
    MfaRequiredByOrg,
    TooManyAttempts,
)
from aayu_accounts.identity.membership import repository as membership_repository
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.user import repository
from aayu_accounts.identity.user.notices import notify_credentials_changed
from aayu_accounts.kit.asgi import client_ip_var
from aayu_accounts.models.user import User

ISSUER = "Aayu Well"


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    qr_svg: str


async def _user(session: AsyncSession, user_id: str) -> User:
    user = await repository.get(session, user_id)
    assert user is not None  # the caller holds a live session of this user
    return user


async def start_enrollment(session: AsyncSession, user_id: str) -> Enrollment:
    """Raises :class:`MfaAlreadyEnabled`; a new call replaces an unconfirmed secret."""
    user = await _user(session, user_id)
    if user.mfa_enabled:
        raise MfaAlreadyEnabled("Disable TOTP first to enroll a new authenticator.")
    secret = mfa.new_secret()
    user.totp_pending_secret = secret
    await session.flush()
    await record(
        session,
        AuditAction.MFA_ENROLLMENT_STARTED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
        details={"method": "totp"},
    )
    uri = mfa.provisioning_uri(secret, user.email or user.id, issuer=ISSUER)
    return Enrollment(secret=secret, otpauth_uri=uri, qr_svg=mfa.qr_svg(uri))


async def _check_code(
    rt: IdentityRuntime, throttle_key: str, verify: Callable[[], int | None]
) -> int:
    """Run ``verify`` under the MFA throttle (5 wrong codes per 15 minutes per session/IP)."""
    ip = client_ip_var.get() or "unknown"
    decision = await rt.mfa_throttle.check(throttle_key, ip)
    if decision.retry_after is not None:
        raise TooManyAttempts(decision.retry_after)
    step = verify()
    if step is None:
        await rt.mfa_throttle.record_failure(throttle_key, ip)
        raise MfaCodeInvalid("The code is not valid (or was already used).")
    await rt.mfa_throttle.record_success(throttle_key, ip)
    return step


async def confirm_enrollment(
    session: AsyncSession,
    rt: IdentityRuntime,
    user_id: str,
    code: str,
    *,
    throttle_key: str,
    current_token_hash: str,
) -> tuple[list[str], IssuedSession]:
    """Turn MFA on with a correct code; returns the 10 recovery codes (shown once) and a new
    session replacing the current one (the token rotates at a privilege change; the user's
    other sessions end).

    Raises :class:`MfaNotEnrolling`, :class:`MfaAlreadyEnabled` or :class:`MfaCodeInvalid`.
    """
    user = await _user(session, user_id)
    if user.mfa_enabled:
        raise MfaAlreadyEnabled()
    pending = user.totp_pending_secret
    if pending is None:
        raise MfaNotEnrolling("Start the enrollment first.")
    step = await _check_code(rt, throttle_key, lambda: mfa.verify_totp(pending, code.strip(), None))
    user.totp_secret = pending
    user.totp_pending_secret = None
    user.totp_last_step = step
    user.mfa_enabled = True
    codes = mfa.generate_recovery_codes(10)
    await repository.replace_recovery_codes(
        session, user.id, [mfa.hash_recovery_code(c) for c in codes]
    )
    # A raised assurance level: this session is replaced, and the user's other sessions
    # (signed in with the password alone) end; a clinic that requires MFA would otherwise
    # let them in once the required action is gone.
    replaced = await session_service.replace_session(
        session, rt, user, current_token_hash=current_token_hash, reason="mfa_enrolled"
    )
    await notify_credentials_changed(session, rt, user, "mfa_changed", change="enabled")
    await record(
        session,
        AuditAction.MFA_ENROLLED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
        details={
            "method": "totp",
            "codes_issued": len(codes),
            "session_rotated": True,
            "other_sessions_revoked": replaced.others_revoked,
        },
    )
    return codes, replaced.issued


async def disable(
    session: AsyncSession, rt: IdentityRuntime, user_id: str, code: str, *, throttle_key: str
) -> None:
    """Raises :class:`MfaRequiredByOrg`, :class:`MfaNotEnabled` or :class:`MfaCodeInvalid`."""
    user = await _user(session, user_id)
    if not user.mfa_enabled or user.totp_secret is None:
        raise MfaNotEnabled()
    if await membership_repository.requires_mfa_enrollment(session, user.id):
        raise MfaRequiredByOrg("A clinic you belong to requires two-factor authentication.")
    secret, last_step = user.totp_secret, user.totp_last_step
    await _check_code(rt, throttle_key, lambda: mfa.verify_totp(secret, code.strip(), last_step))
    user.totp_secret = None
    user.totp_pending_secret = None
    user.totp_last_step = None
    user.mfa_enabled = False
    await repository.replace_recovery_codes(session, user.id, [])
    session_service.forget_user(session, rt, user.id)
    await notify_credentials_changed(session, rt, user, "mfa_changed", change="disabled")
    await record(
        session,
        AuditAction.MFA_DISABLED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
        details={"method": "totp"},
    )
