"""Invitations: an owner or admin invites an address with a role; the link is single use,
expires after 7 days, and either creates the account or adds the membership to a signed-in
user whose address it was sent to.

A signed-in acceptance is a privilege change (a clinic's data becomes reachable): the caller's
session token is replaced, as at TOTP confirmation, and the user's other sessions end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.crypto.field_encryption import normalize_email
from aayu_accounts.email.service import queue_email
from aayu_accounts.errors import Conflict
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.service import IssuedSession
from aayu_accounts.identity.errors import (
    AlreadyMember,
    InsufficientRole,
    InvitationEmailMismatch,
    SignupDetailsRequired,
    TokenInvalid,
)
from aayu_accounts.identity.invitation import repository
from aayu_accounts.identity.membership import repository as membership_repository
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.organization import repository as org_repository
from aayu_accounts.identity.permissions import ROLES_ONLY_OWNER_GRANTS, Permission, Role
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.tokens import hash_token, new_token
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.identity.user.service import (
    accept_current_policies,
    ensure_password_acceptable,
)
from aayu_accounts.kit import clock
from aayu_accounts.models.invitation import Invitation
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.user import User


class AccountExists(Conflict):
    code = "account_exists"
    title = "An account with this address exists; sign in to accept"


@dataclass(frozen=True)
class InvitationView:
    id: str
    email: str
    role: str
    expires_at: datetime


@dataclass(frozen=True)
class Accepted:
    org_id: str
    org_name: str
    role: str
    user_id: str
    created_account: bool
    # A signed-in caller's new session (their token rotated with the new membership).
    session: IssuedSession | None = None


async def invite(
    session: AsyncSession, rt: IdentityRuntime, access: OrgAccess, *, email: str, role: Role
) -> InvitationView:
    """Raises :class:`InsufficientRole` (only owners invite owners) and :class:`AlreadyMember`."""
    access.require(Permission.MEMBERS_INVITE)
    if role in ROLES_ONLY_OWNER_GRANTS and access.role != Role.OWNER:
        raise InsufficientRole("Only an owner can invite an owner.")
    org = await org_repository.get(session, access.org_id)
    assert org is not None  # access was resolved against this clinic
    existing_user = await user_repository.get_by_email(session, email)
    if existing_user is not None:
        membership = await membership_repository.get(session, org.id, existing_user.id)
        if membership is not None and membership.active:
            raise AlreadyMember("This address already belongs to a member of the clinic.")
    await rt.seat_check(session, org.id, role.value)  # billing refuses a clinician past seats
    now = clock.now()
    await repository.revoke_pending_for(session, org.id, email, now)
    token = new_token()
    invitation = await repository.add(
        session,
        Invitation(
            org_id=org.id,
            email=email,
            role=role.value,
            token_hash=hash_token(token),
            invited_by=access.user_id,
            expires_at=now + timedelta(days=rt.settings.invitation_days),
            created_at=now,
        ),
    )
    await queue_email(
        session,
        to=email,
        template="invitation",
        context={
            "org_name": org.name,
            "role": role.value,
            "link": f"{rt.settings.public_url}/accept-invitation?token={token}",
            "days": rt.settings.invitation_days,
        },
    )
    await record(
        session,
        AuditAction.INVITATION_CREATED,
        actor=Actor.user(access.user_id),
        org_id=org.id,
        target_type="invitation",
        target_id=invitation.id,
        details={"role": role.value},
    )
    return InvitationView(invitation.id, email, role.value, invitation.expires_at)


async def accept(
    session: AsyncSession,
    rt: IdentityRuntime,
    *,
    token: str,
    signed_in_user_id: str | None,
    full_name: str | None,
    password: str | None,
    current_token_hash: str | None,
) -> Accepted:
    """Redeem an invitation.

    Signed in: the invitation must have been sent to the caller's address, and the caller's
    session (``current_token_hash``) is replaced by the one returned in
    :attr:`Accepted.session`; the user's other sessions end. Otherwise ``full_name`` and
    ``password`` create the account (verified: the link proves the address; no session).
    Raises :class:`TokenInvalid`, :class:`InvitationEmailMismatch`, :class:`AccountExists`,
    :class:`SignupDetailsRequired`, :class:`PasswordTooWeak`.
    """
    invitation = await repository.by_token_hash(session, hash_token(token))
    now = clock.now()
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= now
    ):
        raise TokenInvalid("The invitation is invalid, already used or expired.")
    org = await org_repository.get(session, invitation.org_id)
    if org is None:
        raise TokenInvalid("The invitation is invalid, already used or expired.")
    invited_email = invitation.email or ""
    created = False
    if signed_in_user_id is not None:
        user = await user_repository.get(session, signed_in_user_id)
        if user is None or normalize_email(user.email or "") != normalize_email(invited_email):
            raise InvitationEmailMismatch("Sign in with the address the invitation was sent to.")
    else:
        if await user_repository.get_by_email(session, invited_email) is not None:
            raise AccountExists("Sign in with this address, then accept the invitation.")
        if not full_name or password is None:
            raise SignupDetailsRequired(
                "full_name and password are needed to create the account.",
                extra={"errors": [{"loc": ["body", "full_name"], "msg": "required"}]},
            )
        await ensure_password_acceptable(
            rt, password, email=invited_email, full_name=full_name, org_name=org.name
        )
        user = User(
            email=invited_email,
            full_name=full_name,
            password_hash=await rt.hasher.hash(password),
        )
        user.email_verified_at = now
        user.password_changed_at = now
        accept_current_policies(rt, user)
        await user_repository.add(session, user)
        created = True

    membership = await membership_repository.get(session, org.id, user.id, for_update=True)
    if membership is None or not membership.active:
        await rt.seat_check(session, org.id, invitation.role)  # seats may be gone meanwhile
    if membership is None:
        await membership_repository.add(
            session, Membership(org_id=org.id, user_id=user.id, role=invitation.role)
        )
    elif membership.active:
        raise AlreadyMember("You are already a member of this clinic.")
    else:
        membership.active = True
        membership.role = invitation.role
    invitation.accepted_at = now
    invitation.accepted_by = user.id
    await session.flush()
    replaced: session_service.ReplacedSession | None = None
    if signed_in_user_id is not None:
        assert current_token_hash is not None  # a signed-in caller presented a token
        # A privilege change within the caller's session: a new token, the old one and
        # the user's other sessions end (docs/security.md).
        replaced = await session_service.replace_session(
            session, rt, user, current_token_hash=current_token_hash, reason="membership_added"
        )
    else:
        session_service.forget_user(session, rt, user.id)  # a new membership: /me changes
    if created:
        await record(
            session,
            AuditAction.USER_REGISTERED,
            actor=Actor.user(user.id),
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={"via": "invitation"},
        )
    await record(
        session,
        AuditAction.INVITATION_ACCEPTED,
        actor=Actor.user(user.id),
        org_id=org.id,
        target_type="invitation",
        target_id=invitation.id,
        details={
            "role": invitation.role,
            "new_account": created,
            "session_rotated": replaced is not None,
            "other_sessions_revoked": replaced.others_revoked if replaced is not None else 0,
        },
    )
    return Accepted(
        org.id,
        org.name,
        invitation.role,
        user.id,
        created,
        session=replaced.issued if replaced is not None else None,
    )
