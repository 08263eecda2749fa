"""Clinic settings: name, ``require_mfa``, idle timeout, and the signed BAA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.errors import NotFound
from aayu_accounts.identity.auth_session.cache import Invalidation
from aayu_accounts.identity.membership import repository as membership_repository
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.organization import repository
from aayu_accounts.identity.permissions import Permission
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.kit import clock
from aayu_accounts.models.organization import Organization


@dataclass(frozen=True)
class OrgView:
    id: str
    name: str
    require_mfa: bool
    idle_timeout_minutes: int
    created_at: datetime
    baa_version: str | None
    baa_signed_at: datetime | None
    baa_signed_by: str | None

    @classmethod
    def of(cls, org: Organization) -> OrgView:
        return cls(
            id=org.id,
            name=org.name,
            require_mfa=org.require_mfa,
            idle_timeout_minutes=org.idle_timeout_minutes,
            created_at=org.created_at,
            baa_version=org.baa_version,
            baa_signed_at=org.baa_signed_at,
            baa_signed_by=org.baa_signed_by,
        )


async def _org(session: AsyncSession, access: OrgAccess) -> Organization:
    org = await repository.get(session, access.org_id)
    if org is None:
        raise NotFound("No such organization.")
    return org


async def get_org(session: AsyncSession, access: OrgAccess) -> OrgView:
    access.require(Permission.ORG_READ)
    return OrgView.of(await _org(session, access))


async def update_org(
    session: AsyncSession,
    rt: IdentityRuntime,
    access: OrgAccess,
    *,
    name: str | None,
    require_mfa: bool | None,
    idle_timeout_minutes: int | None,
) -> OrgView:
    access.require(Permission.ORG_UPDATE)
    org = await _org(session, access)
    changes: dict[str, Any] = {}
    if name is not None and name != org.name:
        changes["name"] = {"old": org.name, "new": name}
        org.name = name
    if require_mfa is not None and require_mfa != org.require_mfa:
        changes["require_mfa"] = {"old": org.require_mfa, "new": require_mfa}
        org.require_mfa = require_mfa
    if "name" in changes or "require_mfa" in changes:
        # Members' cached principals show the clinic's name and their "must enroll" flag.
        members = await membership_repository.members_with_users(session, org.id)
        rt.sessions.mark(session, Invalidation(user_ids={m.user_id for m, _ in members}))
    if idle_timeout_minutes is not None and idle_timeout_minutes != org.idle_timeout_minutes:
        changes["idle_timeout_minutes"] = {
            "old": org.idle_timeout_minutes,
            "new": idle_timeout_minutes,
        }
        org.idle_timeout_minutes = idle_timeout_minutes
    if changes:
        await session.flush()
        await record(
            session,
            AuditAction.ORG_UPDATED,
            actor=Actor.user(access.user_id),
            org_id=org.id,
            target_type="organization",
            target_id=org.id,
            details=changes,
        )
    return OrgView.of(org)


async def record_baa(session: AsyncSession, access: OrgAccess, version: str) -> OrgView:
    """The owner records that the clinic signed the BAA ``version`` (who and when are kept)."""
    access.require(Permission.BAA_SIGN)
    org = await _org(session, access)
    previous = org.baa_version
    org.baa_version = version
    org.baa_signed_at = clock.now()
    org.baa_signed_by = access.user_id
    await session.flush()
    await record(
        session,
        AuditAction.BAA_RECORDED,
        actor=Actor.user(access.user_id),
        org_id=org.id,
        target_type="organization",
        target_id=org.id,
        details={"version": version, "previous_version": previous},
    )
    return OrgView.of(org)
