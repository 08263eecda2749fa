"""Clinic membership: who may see a clinic at all (404 otherwise), roles, deactivation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.errors import NotFound
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.errors import InsufficientRole, LastOwner
from aayu_accounts.identity.membership import repository
from aayu_accounts.identity.permissions import ROLES_ONLY_OWNER_GRANTS, Permission, Role, require
from aayu_accounts.identity.runtime import IdentityRuntime


@dataclass(frozen=True)
class OrgAccess:
    """A caller's verified, active membership in one clinic."""

    org_id: str
    user_id: str
    role: str
    session_id: str | None = None

    def require(self, permission: Permission) -> None:
        require(self.role, permission)


@dataclass(frozen=True)
class MemberView:
    user_id: str
    email: str
    full_name: str
    role: str
    active: bool
    mfa_enabled: bool


async def resolve_access(
    session: AsyncSession, org_id: str, user_id: str, session_id: str | None = None
) -> OrgAccess:
    """The caller's membership; raises :class:`NotFound` for a non-member (never 403)."""
    found = await repository.find_active(session, org_id, user_id)
    if found is None:
        raise NotFound("No such organization.")
    membership, _org = found
    return OrgAccess(org_id=org_id, user_id=user_id, role=membership.role, session_id=session_id)


async def list_members(session: AsyncSession, access: OrgAccess) -> list[MemberView]:
    access.require(Permission.MEMBERS_READ)
    return [
        MemberView(
            user_id=user.id,
            email=user.email or "",
            full_name=user.full_name or "",
            role=membership.role,
            active=membership.active,
            mfa_enabled=user.mfa_enabled,
        )
        for membership, user in await repository.members_with_users(session, access.org_id)
    ]


async def update_member(
    session: AsyncSession,
    rt: IdentityRuntime,
    access: OrgAccess,
    target_user_id: str,
    *,
    role: Role | None,
    active: bool | None,
) -> MemberView:
    """Change a member's role and/or active flag.

    Raises :class:`NotFound` (not a member of this clinic), :class:`InsufficientRole` (an
    admin touching an owner, or granting ownership) and :class:`LastOwner`. A role change,
    a deactivation and a reactivation each revoke every session of the member at once.
    """
    access.require(Permission.MEMBERS_UPDATE)
    membership = await repository.get(session, access.org_id, target_user_id, for_update=True)
    if membership is None:
        raise NotFound("No such member.")
    if access.role != Role.OWNER and (
        membership.role == Role.OWNER or (role is not None and role in ROLES_ONLY_OWNER_GRANTS)
    ):
        raise InsufficientRole("Only an owner can change an owner or grant ownership.")
    losing_owner = (
        membership.role == Role.OWNER
        and membership.active
        and ((role is not None and role != Role.OWNER) or active is False)
    )
    if losing_owner and await repository.active_owner_count(session, access.org_id) <= 1:
        raise LastOwner("The clinic's last owner can be neither demoted nor deactivated.")

    becomes_role = role.value if role is not None else membership.role
    gains_a_seat = (active is True and not membership.active) or (
        membership.active and role is not None and role.value != membership.role
    )
    if gains_a_seat:
        await rt.seat_check(session, access.org_id, becomes_role)
    actor = Actor.user(access.user_id)
    changed = False
    if role is not None and role != membership.role:
        changed = True
        old_role, membership.role = membership.role, role.value
        # A privilege change ends the member's sessions (OWASP: a new session id at every
        # change of privilege level): no token issued under the old role carries on; the
        # member signs in again and gets a fresh one. The caller's own included, when they
        # change their own role. See docs/security.md.
        revoked = await session_service.revoke_all(
            session, rt, target_user_id, reason="role_changed"
        )
        session_service.forget_user(session, rt, target_user_id)  # /me shows the role
        await record(
            session,
            AuditAction.MEMBER_ROLE_CHANGED,
            actor=actor,
            org_id=access.org_id,
            target_type="user",
            target_id=target_user_id,
            details={"old": old_role, "new": role.value, "sessions_revoked": revoked},
        )
    if active is not None and active != membership.active:
        changed = True
        membership.active = active
        if not active:
            revoked = await session_service.revoke_all(
                session, rt, target_user_id, reason="member_deactivated"
            )
            await record(
                session,
                AuditAction.MEMBER_DEACTIVATED,
                actor=actor,
                org_id=access.org_id,
                target_type="user",
                target_id=target_user_id,
                details={"sessions_revoked": revoked},
            )
        else:
            # Access to the clinic comes back: a privilege change like a promotion, so no
            # session the member opened while deactivated carries it (they sign in again).
            revoked = await session_service.revoke_all(
                session, rt, target_user_id, reason="member_reactivated"
            )
            session_service.forget_user(session, rt, target_user_id)
            await record(
                session,
                AuditAction.MEMBER_REACTIVATED,
                actor=actor,
                org_id=access.org_id,
                target_type="user",
                target_id=target_user_id,
                details={"sessions_revoked": revoked},
            )
    if changed:
        # Seats held and per-role answers change with it (billing's entitlement cache).
        rt.membership_changed(session, access.org_id)
    await session.flush()
    for view in await list_members(session, access):
        if view.user_id == target_user_id:
            return view
    raise NotFound("No such member.")
