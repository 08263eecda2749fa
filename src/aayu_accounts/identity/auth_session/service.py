"""Sessions: sign-in (password, throttling, CAPTCHA, MFA step), lookup, touch, revocation.

Rules worth stating:

* Sign-in failures take one path: unknown email, wrong password, deactivated and unverified
  accounts all cost one Argon2id verification (against a real hash made at start-up for the
  unknown ones) and produce the same :class:`InvalidCredentials`. Only the audit row, which the
  client never sees, tells them apart.
* Failures are *returned* (not raised) by :func:`login` and :func:`complete_mfa`, so the edge
  commits the failure's audit row and counters; raising would roll them back.
* A session token is 256 random bits, stored only as SHA-256; every sign-in makes a new one
  (never reuses a presented one), which is the rotation that defeats session fixation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.config import Settings
from aayu_accounts.crypto.field_encryption import normalize_email
from aayu_accounts.db import read_before_writing
from aayu_accounts.errors import AppError, NotFound
from aayu_accounts.identity import mfa
from aayu_accounts.identity.auth_session import repository
from aayu_accounts.identity.auth_session.cache import CachedPrincipal, Invalidation
from aayu_accounts.identity.errors import (
    CaptchaRequired,
    InvalidCredentials,
    MfaInvalid,
    TooManyAttempts,
)
from aayu_accounts.identity.membership import repository as membership_repository
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.throttle.login import Decision
from aayu_accounts.identity.tokens import hash_token, new_token
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, user_agent_var
from aayu_accounts.models.auth_session import AuthSession
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.mfa_challenge import MfaChallenge
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.user import User
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert.service import raise_alert
from aayu_accounts.observability.alert.severity import Severity, runbook_link
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.sign_in import route_sign_in

ACTION_MFA_ENROLLMENT = "mfa_enrollment"
ACTION_ACCEPT_POLICIES = "accept_policies"


@dataclass(frozen=True)
class IssuedSession:
    session_id: str
    token: str
    expires_at: datetime
    user: User
    required_actions: tuple[str, ...]
    # The user's active memberships with their clinics, read once for the session's rules;
    # the sign-in answer lists them too, without asking the database again.
    memberships: Sequence[tuple[Membership, Organization]] = field(default=())


@dataclass(frozen=True)
class MfaStep:
    mfa_token: str
    expires_at: datetime


LoginOutcome = IssuedSession | MfaStep | AppError


def _ip() -> str | None:
    return client_ip_var.get()


async def required_actions(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    clinic_requires_mfa: bool | None = None,
) -> tuple[str, ...]:
    """What the user must do before anything else; ``clinic_requires_mfa`` when the caller
    has already read it (sign-in reads it with the idle timeout, in one query)."""
    actions: list[str] = []
    if not user.mfa_enabled and (
        user.mfa_enrollment_required
        or (
            clinic_requires_mfa
            if clinic_requires_mfa is not None
            else await membership_repository.requires_mfa_enrollment(session, user.id)
        )
    ):
        actions.append(ACTION_MFA_ENROLLMENT)
    if user.terms_version != settings.terms_version or (
        user.privacy_version != settings.privacy_version
    ):
        actions.append(ACTION_ACCEPT_POLICIES)
    return tuple(actions)


async def issue_session(
    session: AsyncSession, rt: IdentityRuntime, user: User, *, replaces: str | None = None
) -> IssuedSession:
    """Create a fresh session for ``user``; ``replaces`` (a presented token hash) is revoked."""
    settings = rt.settings
    now = clock.now()
    if replaces is not None:
        await revoke_token_hash(session, rt, replaces, reason="rotated")
    idle_minutes = settings.session_idle_minutes
    memberships = await membership_repository.memberships_of_user(session, user.id)
    clinic_minutes, clinic_requires_mfa = membership_repository.session_rules_of(memberships)
    if clinic_minutes is not None:
        idle_minutes = max(5, min(idle_minutes, clinic_minutes))
    token = new_token()
    auth_session = await repository.add(
        session,
        AuthSession(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.session_absolute_hours),
            idle_timeout_seconds=idle_minutes * 60,
            ip=_ip(),
            user_agent=user_agent_var.get(),
        ),
    )
    return IssuedSession(
        session_id=auth_session.id,
        token=token,
        expires_at=auth_session.expires_at,
        user=user,
        required_actions=await required_actions(
            session, settings, user, clinic_requires_mfa=clinic_requires_mfa
        ),
        memberships=memberships,
    )


# --- sign-in ---------------------------------------------------------------------------


async def _fail(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    ip: str,
    account_key: str,
    user: User | None,
    reason: str,
) -> AppError:
    signals = await rt.login_throttle.record_failure(ip, account_key)
    metrics.AUTH_LOGIN_FAILURES.labels("invalid_credentials").inc()
    actor = Actor.user(user.id) if user is not None else Actor.anonymous()
    await record(
        session,
        AuditAction.LOGIN_FAILED,
        actor=actor,
        target_type="user" if user is not None else None,
        target_id=user.id if user is not None else None,
        outcome="failure",
        details={"reason": reason},
    )
    if signals.brute_force_detected:
        scope = str(signals.brute_force_scope or "ip")
        metrics.SUSPICIOUS_EVENTS.labels("brute_force").inc()
        await record(
            session,
            AuditAction.BRUTE_FORCE_DETECTED,
            actor=Actor.anonymous(),
            target_type="user" if scope == "account" and user is not None else None,
            target_id=user.id if scope == "account" and user is not None else None,
            outcome="failure",
            details={"scope": scope},
        )
        # Committed with this failure's audit row (failures are returned, not raised).
        await raise_alert(
            session,
            f"identity.brute_force.{scope}",
            Severity.HIGH,
            f"Credential stuffing or brute force detected (scope: {scope})",
            runbook_link("alert-brute-force"),
            labels={"scope": scope},
        )
    if signals.pair_blocked or signals.ip_blocked:
        metrics.SUSPICIOUS_EVENTS.labels("lockout").inc()
        await record(
            session,
            AuditAction.LOGIN_LOCKED_OUT,
            actor=actor,
            target_type="user" if user is not None else None,
            target_id=user.id if user is not None else None,
            outcome="failure",
            details={"scope": "ip" if signals.ip_blocked else "pair"},
        )
    return InvalidCredentials("The email or password is incorrect.")


async def login(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    email: str,
    password: str,
    captcha: str | None,
    presented_token_hash: str | None = None,
    rollout: RolloutContext | None = None,
) -> LoginOutcome:
    """Sign in; ``rollout`` routes v2.5 users by NEW_AUTH (see ``rollout.sign_in``)."""
    ip = _ip() or "unknown"
    account_key = normalize_email(email)
    decision = await rt.login_throttle.check(ip, account_key)
    if decision.retry_after is not None:
        metrics.AUTH_LOGIN_FAILURES.labels("locked").inc()
        metrics.RATE_LIMIT_REFUSALS.labels("login").inc()
        await record(
            session,
            AuditAction.LOGIN_LOCKED_OUT,
            actor=Actor.anonymous(),
            outcome="denied",
            details={"reason": str(decision.reason or "blocked")},
        )
        return TooManyAttempts(decision.retry_after)
    if decision.captcha_required:
        solved = captcha is not None and await rt.captcha.verify(captcha, remote_ip=ip)
        if not solved:
            metrics.AUTH_LOGIN_FAILURES.labels("captcha").inc()
            await record(
                session,
                AuditAction.CAPTCHA_REQUIRED,
                actor=Actor.anonymous(),
                outcome="denied",
                details={"reason": str(decision.reason or "throttled")},
            )
            return CaptchaRequired(rt.captcha.challenge())

    async def new_path() -> LoginOutcome:
        return await _password_path(
            session,
            rt,
            email=email,
            password=password,
            ip=ip,
            account_key=account_key,
            presented_token_hash=presented_token_hash,
            decision=decision,
        )

    async def accept(user_id: str) -> LoginOutcome:
        # The v2.5 credential list accepted the password (the legacy path): open a session
        # of the identity user this v2.5 user was migrated into.
        user = await user_repository.get(session, user_id)
        if user is None or not user.is_active:
            return await reject()
        await rt.login_throttle.record_success(ip, account_key, checked=decision)
        return await _second_step_or_session(
            session, rt, user, presented_token_hash=presented_token_hash, path="legacy"
        )

    async def reject() -> LoginOutcome:
        await rt.hasher.verify_dummy(password)  # the new path's cost, so timing stays alike
        return await _fail(
            session, rt, ip=ip, account_key=account_key, user=None, reason="legacy_rejected"
        )

    if rollout is None:
        return await new_path()
    outcome, _decision = await route_sign_in(
        session,
        rollout,
        email,
        password,
        hasher=rt.hasher,
        new_path=new_path,
        accept=accept,
        reject=reject,
    )
    return outcome


async def _password_path(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    email: str,
    password: str,
    ip: str,
    account_key: str,
    presented_token_hash: str | None,
    decision: Decision | None = None,
) -> LoginOutcome:
    """The new path: the password checked against the identity store's Argon2id hash.

    Read, verify, then write: the account is looked up in a read transaction that ends before
    the hash is verified, and the writes (session, audit, counters) start afterwards, so no
    sign-in holds SQLite's write lock or a pooled connection across the ~100 ms of Argon2id.
    Unknown and known addresses take the same steps (lookup, one verification, one lookup by
    id in the write transaction), so their timing stays alike.
    """
    found_id, read_hash = await _look_up_for_sign_in(session, email)
    password_ok = False
    if read_hash is None:
        await rt.hasher.verify_dummy(password)
    else:
        # The real hash is verified for deactivated and unverified accounts too: same cost.
        password_ok = await rt.hasher.verify(read_hash, password)
    # The write transaction begins here, with the account as it is now.
    user = await user_repository.get(session, found_id or _NO_SUCH_USER)
    if user is None:
        return await _fail(
            session, rt, ip=ip, account_key=account_key, user=None, reason="unknown_account"
        )
    if user.password_hash != read_hash:
        # The password changed (or the hash was upgraded) between the read and now: judge
        # the attempt against the current hash. Rare; only then is a hash verified here.
        password_ok = await rt.hasher.verify(user.password_hash, password)
    if not password_ok:
        reason = "wrong_password"
    elif not user.is_active:
        reason = "deactivated"
    elif user.email_verified_at is None:
        reason = "unverified"
    else:
        reason = ""
    if reason:
        return await _fail(session, rt, ip=ip, account_key=account_key, user=user, reason=reason)

    await rt.login_throttle.record_success(ip, account_key, checked=decision)
    if rt.hasher.needs_rehash(user.password_hash):
        # Parameters changed since this hash was made: upgrade it while we hold the password.
        user.password_hash = await rt.hasher.hash(password)
    return await _second_step_or_session(
        session, rt, user, presented_token_hash=presented_token_hash, path="new"
    )


# An id no user has (ids are UUIDs): the unknown address's lookup by id, so both paths query.
_NO_SUCH_USER = "00000000-0000-0000-0000-000000000000"


async def _look_up_for_sign_in(session: AsyncSession, email: str) -> tuple[str | None, str | None]:
    """(user id, password hash) for ``email``, read in a transaction that is over on return,
    so the connection (and on SQLite the write lock) is free while the hash is verified."""

    async def read() -> tuple[str | None, str | None]:
        user = await user_repository.get_by_email(session, email)
        return (user.id, user.password_hash) if user is not None else (None, None)

    return await read_before_writing(session, read)


async def _second_step_or_session(
    session: AsyncSession,
    rt: IdentityRuntime,
    user: User,
    *,
    presented_token_hash: str | None,
    path: str,
) -> LoginOutcome:
    """After a correct password: the MFA step when enrolled, else a fresh session."""
    if user.mfa_enabled:
        token = new_token()
        expires = clock.now() + timedelta(minutes=rt.settings.mfa_login_minutes)
        await repository.add_challenge(
            session, MfaChallenge(user_id=user.id, token_hash=hash_token(token), expires_at=expires)
        )
        await record(
            session,
            AuditAction.LOGIN_SUCCEEDED,
            actor=Actor.user(user.id),
            target_type="user",
            target_id=user.id,
            details={"step": "password", "mfa_required": True, "path": path},
        )
        return MfaStep(mfa_token=token, expires_at=expires)
    issued = await issue_session(session, rt, user, replaces=presented_token_hash)
    await record(
        session,
        AuditAction.LOGIN_SUCCEEDED,
        actor=Actor.user(user.id),
        target_type="session",
        target_id=issued.session_id,
        details={"mfa": False, "path": path},
    )
    return issued


async def complete_mfa(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    mfa_token: str,
    code: str,
    presented_token_hash: str | None = None,
) -> IssuedSession | AppError:
    ip = _ip() or "unknown"
    token_hash = hash_token(mfa_token)
    decision = await rt.mfa_throttle.check(token_hash, ip)
    if decision.retry_after is not None:
        return TooManyAttempts(decision.retry_after)
    now = clock.now()
    challenge = await repository.find_challenge(session, token_hash)
    if challenge is None or challenge.used_at is not None or challenge.expires_at <= now:
        await rt.mfa_throttle.record_failure(token_hash, ip)
        return MfaInvalid("The verification code or sign-in step is invalid or expired.")
    user = await user_repository.get(session, challenge.user_id)
    if user is None or not user.is_active or not user.mfa_enabled or user.totp_secret is None:
        return MfaInvalid("The verification code or sign-in step is invalid or expired.")

    method = await _verify_second_factor(session, user, code)
    if method is None:
        metrics.AUTH_LOGIN_FAILURES.labels("mfa").inc()
        await rt.mfa_throttle.record_failure(token_hash, ip)
        challenge.failed_attempts += 1
        await record(
            session,
            AuditAction.MFA_FAILED,
            actor=Actor.user(user.id),
            target_type="user",
            target_id=user.id,
            outcome="failure",
        )
        return MfaInvalid("The verification code or sign-in step is invalid or expired.")
    await rt.mfa_throttle.record_success(token_hash, ip)
    challenge.used_at = now
    issued = await issue_session(session, rt, user, replaces=presented_token_hash)
    action = AuditAction.RECOVERY_CODE_USED if method == "recovery_code" else AuditAction.MFA_USED
    await record(
        session,
        action,
        actor=Actor.user(user.id),
        target_type="session",
        target_id=issued.session_id,
        details={"method": method},
    )
    return issued


async def _verify_second_factor(session: AsyncSession, user: User, code: str) -> str | None:
    """``"totp"`` or ``"recovery_code"`` when ``code`` is accepted (and consumed), else None."""
    cleaned = code.strip().replace(" ", "")
    secret = user.totp_secret
    if secret is not None and cleaned.isdigit():
        step = mfa.verify_totp(secret, cleaned, user.totp_last_step)
        if step is not None:
            user.totp_last_step = step
            await session.flush()
            return "totp"
        return None
    stored = await user_repository.unused_recovery_codes(session, user.id)
    remaining = mfa.consume_recovery_code(code.strip(), [c.code_hash for c in stored])
    if remaining is None:
        return None
    left = list(remaining)
    for item in stored:
        if item.code_hash in left:
            left.remove(item.code_hash)
        elif item.used_at is None:
            item.used_at = clock.now()
    await session.flush()
    return "recovery_code"


# --- lookups and activity -------------------------------------------------------------


async def load_principal(
    session: AsyncSession, settings: Settings, token_hash: str
) -> CachedPrincipal | None:
    found = await repository.live_with_user(session, token_hash)
    if found is None:
        return None
    auth_session, user = found
    if not user.is_active:
        return None
    return CachedPrincipal(
        session_id=auth_session.id,
        token_hash=token_hash,
        user_id=user.id,
        is_platform_admin=user.is_platform_admin,
        mfa_enabled=user.mfa_enabled,
        created_at=auth_session.created_at,
        expires_at=auth_session.expires_at,
        idle_timeout_seconds=auth_session.idle_timeout_seconds,
        last_seen_at=auth_session.last_seen_at,
        last_written_at=auth_session.last_seen_at,
        required_actions=await required_actions(session, settings, user),
    )


def is_live(entry: CachedPrincipal, now: datetime) -> bool:
    if now >= entry.expires_at:
        return False
    return (now - entry.last_seen_at).total_seconds() < entry.idle_timeout_seconds


async def touch(
    session: AsyncSession, entry: CachedPrincipal, now: datetime, ip: str | None, ua: str | None
) -> None:
    await repository.touch(session, entry.session_id, now=now, ip=ip, user_agent=ua)


# --- revocation -------------------------------------------------------------------------


async def revoke_token_hash(
    session: AsyncSession, rt: IdentityRuntime, token_hash: str, *, reason: str
) -> str | None:
    """Revoke the session with this token hash; returns its id (None when not live)."""
    auth_session = await repository.by_token_hash(session, token_hash)
    rt.sessions.mark(session, Invalidation(token_hashes={token_hash}))
    if auth_session is None or auth_session.revoked_at is not None:
        return None
    auth_session.revoked_at = clock.now()
    auth_session.revoke_reason = reason
    await session.flush()
    return auth_session.id


async def revoke_all(
    session: AsyncSession,
    rt: IdentityRuntime,
    user_id: str,
    *,
    reason: str,
    except_session_id: str | None = None,
) -> int:
    hashes = await repository.revoke_where(
        session, user_id=user_id, now=clock.now(), reason=reason, except_id=except_session_id
    )
    rt.sessions.mark(session, Invalidation(token_hashes=set(hashes)))
    return len(hashes)


@dataclass(frozen=True)
class ReplacedSession:
    """The caller's new session after a privilege change, and how many others ended."""

    issued: IssuedSession
    others_revoked: int


async def replace_session(
    session: AsyncSession,
    rt: IdentityRuntime,
    user: User,
    *,
    current_token_hash: str,
    reason: str,
) -> ReplacedSession:
    """A privilege change made in the caller's own session (TOTP confirmed, a clinic joined).

    The presented token is replaced by a new one (the caller gets it in the answer; the old
    one answers 401 on every instance), and the user's other sessions end with ``reason``:
    none of them was issued with the new privilege, so none carries it on (OWASP: no session
    identifier survives a change of privilege level). Cached principals of the user are
    dropped too (their memberships and required actions changed).
    """
    issued = await issue_session(session, rt, user, replaces=current_token_hash)
    others = await revoke_all(
        session, rt, user.id, reason=reason, except_session_id=issued.session_id
    )
    forget_user(session, rt, user.id)
    return ReplacedSession(issued=issued, others_revoked=others)


def forget_user(session: AsyncSession, rt: IdentityRuntime, user_id: str) -> None:
    """Cached principals of this user carry stale facts (MFA, policies): drop them."""
    rt.sessions.mark(session, Invalidation(user_ids={user_id}))


async def logout(session: AsyncSession, rt: IdentityRuntime, token_hash: str) -> None:
    auth_session = await repository.by_token_hash(session, token_hash)
    session_id = await revoke_token_hash(session, rt, token_hash, reason="logout")
    if session_id is not None and auth_session is not None:
        await record(
            session,
            AuditAction.LOGGED_OUT,
            actor=Actor.user(auth_session.user_id),
            target_type="session",
            target_id=session_id,
        )


async def list_sessions(session: AsyncSession, user_id: str) -> list[AuthSession]:
    now = clock.now()
    return [
        s
        for s in await repository.live_for_user(session, user_id, now)
        if (now - s.last_seen_at).total_seconds() < s.idle_timeout_seconds
    ]


async def revoke_own_session(
    session: AsyncSession, rt: IdentityRuntime, *, user_id: str, session_id: str
) -> None:
    """Revoke one of the caller's sessions; another user's (or unknown) id is 404."""
    auth_session = await repository.get_for_user(session, session_id, user_id)
    if auth_session is None:
        raise NotFound("No such session.")
    if auth_session.revoked_at is None:
        auth_session.revoked_at = clock.now()
        auth_session.revoke_reason = "revoked_by_user"
        await session.flush()
        await record(
            session,
            AuditAction.SESSION_REVOKED,
            actor=Actor.user(user_id),
            target_type="session",
            target_id=session_id,
        )
    rt.sessions.mark(session, Invalidation(token_hashes={auth_session.token_hash}))
