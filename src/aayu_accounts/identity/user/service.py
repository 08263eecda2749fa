"""Accounts: sign-up, email verification, password reset and change, the caller's profile.

Sign-up and reset requests answer the same whatever the address: the work done is the same
too (a password is hashed on sign-up whether or not the address is taken), and the owner of a
taken address learns about the attempt by email instead of the requester learning it here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.config import Settings
from aayu_accounts.crypto.field_encryption import seal, unseal
from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring
from aayu_accounts.crypto.keyring.core import ciphertext_version
from aayu_accounts.crypto.keyring.usage import register_usage_counter
from aayu_accounts.email.service import queue_email
from aayu_accounts.errors import Conflict
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.errors import (
    CurrentPasswordWrong,
    PasswordTooWeak,
    TokenInvalid,
    TooManyAttempts,
)
from aayu_accounts.identity.membership import repository as membership_repository
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.permissions import Role
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.tokens import hash_token, new_token
from aayu_accounts.identity.user import repository
from aayu_accounts.identity.user.notices import notify_credentials_changed
from aayu_accounts.jobs import QUEUED, RUNNING, enqueue, job_handler
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, request_id_var, user_agent_var
from aayu_accounts.kit.ids import new_id
from aayu_accounts.models.email_token import EmailToken
from aayu_accounts.models.job import Job
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.user import User
from aayu_accounts.observability import metrics

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a password
RESET_JOB = "identity.password_reset"
# Reset emails per account per hour: beyond this, requests still answer 202 but send nothing.
RESET_EMAILS_PER_HOUR = 5
RESET_REQUESTS_PER_IP = 10
RESET_WINDOW_SECONDS = 900


@dataclass(frozen=True)
class MembershipView:
    org_id: str
    org_name: str
    role: str


@dataclass(frozen=True)
class Profile:
    id: str
    email: str
    full_name: str
    mfa_enabled: bool
    memberships: list[MembershipView]


async def ensure_password_acceptable(
    rt: IdentityRuntime | PasswordPolicy,
    password: str,
    *,
    email: str | None,
    full_name: str | None,
    org_name: str | None = None,
) -> None:
    """Raises :class:`PasswordTooWeak` listing every reason the policy refuses ``password``."""
    policy = rt if isinstance(rt, PasswordPolicy) else rt.policy
    violations = await policy.acheck(password, email=email, full_name=full_name, org_name=org_name)
    if violations:
        raise PasswordTooWeak([v.as_dict() for v in violations])


async def _ensure_new_password_acceptable(
    session: AsyncSession, rt: IdentityRuntime, user: User, new_password: str
) -> None:
    """The policy check for an existing user's new password (reset or change).

    The name of the user's first clinic is among the words the policy refuses inside it.
    """
    org_names = [
        o.name for _, o in await membership_repository.memberships_of_user(session, user.id)
    ]
    await ensure_password_acceptable(
        rt,
        new_password,
        email=user.email,
        full_name=user.full_name,
        org_name=org_names[0] if org_names else None,
    )


def _link(rt: IdentityRuntime, page: str, token: str) -> str:
    return f"{rt.settings.public_url}/{page}?token={token}"


async def _email_token(session: AsyncSession, user: User, purpose: str, lifetime: timedelta) -> str:
    token = new_token()
    now = clock.now()
    await repository.add_email_token(
        session,
        EmailToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_token(token),
            expires_at=now + lifetime,
            created_at=now,
        ),
    )
    return token


def accept_current_policies(rt: IdentityRuntime | Settings, user: User) -> None:
    settings = rt if isinstance(rt, Settings) else rt.settings
    now = clock.now()
    user.terms_version = settings.terms_version
    user.terms_accepted_at = now
    user.privacy_version = settings.privacy_version
    user.privacy_accepted_at = now


async def register(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    email: str,
    password: str,
    full_name: str,
    organization_name: str,
) -> None:
    """Create the user and their clinic (as owner) and send the verification email.

    Raises :class:`PasswordTooWeak`. For a taken address nothing is created; its owner gets a
    notice instead, and the caller cannot tell the difference.
    """
    await ensure_password_acceptable(
        rt, password, email=email, full_name=full_name, org_name=organization_name
    )
    # Hash before looking the address up: the same work is done on both paths.
    password_hash = await rt.hasher.hash(password)
    existing = await repository.get_by_email(session, email)
    if existing is not None:
        if existing.is_active:
            await queue_email(
                session,
                to=existing.email or email,
                template="account_exists",
                context={
                    "full_name": existing.full_name,
                    "reset_link": f"{rt.settings.public_url}/reset-password",
                },
            )
        await record(
            session,
            AuditAction.USER_REGISTERED,
            actor=Actor.anonymous(),
            target_type="user",
            target_id=existing.id,
            outcome="failure",
            details={"reason": "email_taken"},
        )
        return

    user = User(email=email, full_name=full_name, password_hash=password_hash)
    user.password_changed_at = clock.now()
    # Signing up is agreeing to the terms and privacy policy shown on the sign-up form.
    accept_current_policies(rt, user)
    try:
        async with session.begin_nested():
            await repository.add(session, user)
    except IntegrityError:
        # A concurrent sign-up with the same address won the race: answer as for a taken one.
        return
    org = Organization(name=organization_name)
    session.add(org)
    await session.flush()
    await membership_repository.add(
        session, Membership(org_id=org.id, user_id=user.id, role=Role.OWNER.value)
    )
    token = await _email_token(
        session, user, VERIFY_EMAIL, timedelta(hours=rt.settings.email_verification_hours)
    )
    await queue_email(
        session,
        to=email,
        template="verify_email",
        context={
            "full_name": full_name,
            "link": _link(rt, "verify-email", token),
            "hours": rt.settings.email_verification_hours,
        },
    )
    await record(
        session,
        AuditAction.USER_REGISTERED,
        actor=Actor.user(user.id),
        org_id=org.id,
        target_type="user",
        target_id=user.id,
        details={"terms_version": user.terms_version, "privacy_version": user.privacy_version},
    )
    metrics.SIGNUPS.inc()
    await record(
        session,
        AuditAction.ORG_CREATED,
        actor=Actor.user(user.id),
        org_id=org.id,
        target_type="organization",
        target_id=org.id,
    )


async def _redeem(session: AsyncSession, token: str, purpose: str) -> EmailToken:
    found = await repository.find_email_token(session, hash_token(token), purpose)
    if found is None or found.used_at is not None or found.expires_at <= clock.now():
        raise TokenInvalid("The link is invalid, already used or expired.")
    found.used_at = clock.now()
    return found


async def verify_email(session: AsyncSession, rt: IdentityRuntime, token: str) -> None:
    """Raises :class:`TokenInvalid` for an unknown, used or expired token."""
    redeemed = await _redeem(session, token, VERIFY_EMAIL)
    user = await repository.get(session, redeemed.user_id)
    if user is None:
        raise TokenInvalid("The link is invalid, already used or expired.")
    if user.email_verified_at is None:
        user.email_verified_at = clock.now()
    await session.flush()
    await record(
        session,
        AuditAction.EMAIL_VERIFIED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
    )


async def request_password_reset(session: AsyncSession, rt: IdentityRuntime, email: str) -> None:
    """Always succeeds from the caller's point of view (202), whether or not the account exists.

    The request does the same work for every address: one rate-limit hit and one job, whose
    payload holds the address sealed under the data key. The lookup, the token, the email and
    the audit event happen in the job, so the answer's timing cannot tell whether the account
    exists (tests/security/test_enumeration.py).

    Raises :class:`TooManyAttempts` after ``RESET_REQUESTS_PER_IP`` requests from one address
    in ``RESET_WINDOW_SECONDS`` (whatever the addresses asked for): mail bombing and probing.
    """
    ip = client_ip_var.get() or "unknown"
    key = "reset:ip:" + hashlib.sha256(ip.encode()).hexdigest()[:32]
    now = clock.now().timestamp()
    [count] = await rt.store.hit([(key, RESET_WINDOW_SECONDS)], now)
    if count > RESET_REQUESTS_PER_IP:
        raise TooManyAttempts(RESET_WINDOW_SECONDS)
    seal_id = new_id()
    sealed = seal(
        get_keyring(), KeyPurpose.DATA, email, table="jobs", column=RESET_JOB, row_id=seal_id
    )
    await enqueue(
        session,
        RESET_JOB,
        {
            "seal_id": seal_id,
            "email": base64.b64encode(sealed).decode("ascii"),
            "link_base": f"{rt.settings.public_url}/reset-password",
            "minutes": rt.settings.password_reset_minutes,
            # The request's context, so the job's audit event says where the request came from.
            "ip": client_ip_var.get(),
            "user_agent": user_agent_var.get(),
            "request_id": request_id_var.get(),
        },
    )
    # Every request is on the trail, whatever the address (none is named: it may be anyone's,
    # or a probe); the job records which account was emailed, if any.
    await record(session, AuditAction.PASSWORD_RESET_REQUESTED, actor=Actor.anonymous())


async def _reset_seals_per_version(session: AsyncSession) -> Counter[int]:
    """Data-key versions of the addresses sealed in reset jobs not yet finished, so ``keys
    retire data N`` is refused while one of them would still need version N to run."""
    payloads = await session.scalars(
        select(Job.payload).where(Job.kind == RESET_JOB).where(Job.status.in_((QUEUED, RUNNING)))
    )
    counts: Counter[int] = Counter()
    for payload in payloads:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            counts[ciphertext_version(base64.b64decode(payload["email"]))] += 1
    return counts


register_usage_counter(KeyPurpose.DATA, _reset_seals_per_version)


@job_handler(RESET_JOB, max_attempts=5)
async def send_password_reset(session: AsyncSession, payload: dict[str, Any]) -> None:
    """The job behind a reset request: email a reset link if the account exists and is
    active, at most ``RESET_EMAILS_PER_HOUR`` per hour; otherwise nothing."""
    email = unseal(
        get_keyring(),
        KeyPurpose.DATA,
        base64.b64decode(payload["email"]),
        table="jobs",
        column=RESET_JOB,
        row_id=str(payload["seal_id"]),
    )
    user = await repository.get_by_email(session, email)
    if user is None or not user.is_active:
        return
    since = clock.now() - timedelta(hours=1)
    recent = await session.scalar(
        select(func.count())
        .select_from(EmailToken)
        .where(EmailToken.user_id == user.id)
        .where(EmailToken.purpose == PASSWORD_RESET)
        .where(EmailToken.created_at >= since)
    )
    if (recent or 0) >= RESET_EMAILS_PER_HOUR:
        return
    minutes = int(payload["minutes"])
    token = await _email_token(session, user, PASSWORD_RESET, timedelta(minutes=minutes))
    await queue_email(
        session,
        to=user.email or email,
        template="password_reset",
        context={
            "full_name": user.full_name,
            "link": f"{payload['link_base']}?token={token}",
            "minutes": minutes,
        },
    )
    context = (
        (client_ip_var, payload.get("ip")),
        (user_agent_var, payload.get("user_agent")),
        (request_id_var, payload.get("request_id")),
    )
    tokens = [(var, var.set(value)) for var, value in context]
    try:
        await record(
            session,
            AuditAction.PASSWORD_RESET_EMAILED,
            actor=Actor.anonymous(),
            target_type="user",
            target_id=user.id,
        )
    finally:
        for var, reset in reversed(tokens):
            var.reset(reset)


async def confirm_password_reset(
    session: AsyncSession, rt: IdentityRuntime, *, token: str, new_password: str
) -> None:
    """Set the new password and revoke every session of the user.

    Raises :class:`TokenInvalid` or :class:`PasswordTooWeak` (the token stays usable then).
    """
    redeemed = await _redeem(session, token, PASSWORD_RESET)
    user = await repository.get(session, redeemed.user_id)
    if user is None or not user.is_active:
        raise TokenInvalid("The link is invalid, already used or expired.")
    await _ensure_new_password_acceptable(session, rt, user, new_password)
    now = clock.now()
    user.password_hash = await rt.hasher.hash(new_password)
    user.password_changed_at = now
    # Following the emailed link proves the address as well as the verification link would.
    if user.email_verified_at is None:
        user.email_verified_at = now
    await repository.retire_email_tokens(session, user.id, PASSWORD_RESET, now)
    revoked = await session_service.revoke_all(session, rt, user.id, reason="password_reset")
    await notify_credentials_changed(session, rt, user, "password_changed", how="reset")
    await record(
        session,
        AuditAction.PASSWORD_RESET_COMPLETED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
        details={"sessions_revoked": revoked},
    )


async def change_password(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    user_id: str,
    current_session_id: str,
    current_password: str,
    new_password: str,
) -> None:
    """Raises :class:`CurrentPasswordWrong` or :class:`PasswordTooWeak`; other sessions end."""
    user = await repository.get(session, user_id)
    if user is None:
        raise CurrentPasswordWrong()
    if not await rt.hasher.verify(user.password_hash, current_password):
        raise CurrentPasswordWrong("The current password is wrong.")
    await _ensure_new_password_acceptable(session, rt, user, new_password)
    user.password_hash = await rt.hasher.hash(new_password)
    user.password_changed_at = clock.now()
    revoked = await session_service.revoke_all(
        session, rt, user.id, reason="password_changed", except_session_id=current_session_id
    )
    await notify_credentials_changed(session, rt, user, "password_changed", how="changed")
    await record(
        session,
        AuditAction.PASSWORD_CHANGED,
        actor=Actor.user(user.id),
        target_type="user",
        target_id=user.id,
        details={"other_sessions_revoked": revoked},
    )


async def profile(session: AsyncSession, user_id: str) -> Profile:
    user = await repository.get(session, user_id)
    assert user is not None  # the caller holds a live session of this user
    memberships = await membership_repository.memberships_of_user(session, user_id)
    return Profile(
        id=user.id,
        email=user.email or "",
        full_name=user.full_name or "",
        mfa_enabled=user.mfa_enabled,
        memberships=[MembershipView(o.id, o.name, m.role) for m, o in memberships],
    )


class UserExists(Conflict):
    code = "user_exists"
    title = "A user with this email address exists"


async def create_verified_user(
    session: AsyncSession,
    *,
    settings: Settings,
    hasher: PasswordHasher,
    policy: PasswordPolicy,
    email: str,
    password: str,
    full_name: str,
    platform_admin: bool,
    actor: Actor,
) -> User:
    """An operator-made account (``admin create``, demo data): verified, policies accepted.

    Raises :class:`UserExists` and :class:`PasswordTooWeak`.
    """
    if await repository.get_by_email(session, email) is not None:
        raise UserExists("A user with this email address already exists.")
    await ensure_password_acceptable(policy, password, email=email, full_name=full_name)
    now = clock.now()
    user = User(email=email, full_name=full_name, password_hash=await hasher.hash(password))
    user.email_verified_at = now
    user.password_changed_at = now
    user.is_platform_admin = platform_admin
    accept_current_policies(settings, user)
    await repository.add(session, user)
    await record(
        session,
        AuditAction.PLATFORM_ADMIN_CREATED if platform_admin else AuditAction.USER_REGISTERED,
        actor=actor,
        target_type="user",
        target_id=user.id,
        details={"via": "cli"},
    )
    return user


async def create_clinic_for(
    session: AsyncSession, user: User, name: str, *, actor: Actor
) -> Organization:
    """A clinic with ``user`` as its owner (demo data)."""
    org = Organization(name=name)
    session.add(org)
    await session.flush()
    await membership_repository.add(
        session, Membership(org_id=org.id, user_id=user.id, role=Role.OWNER.value)
    )
    await record(
        session,
        AuditAction.ORG_CREATED,
        actor=actor,
        org_id=org.id,
        target_type="organization",
        target_id=org.id,
    )
    return org


async def exists(session: AsyncSession, email: str) -> bool:
    return await repository.get_by_email(session, email) is not None
