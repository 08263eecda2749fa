"""Terms of service and privacy policy: which version each user accepted, and when.

Signing up (or accepting an invitation) accepts the versions then current. Publishing a new
version (``AAYU_TERMS_VERSION`` / ``AAYU_PRIVACY_VERSION``) makes every user accept it at
their next sign-in: until then their session carries the ``accept_policies`` action and other
routes answer 403 ``policy_acceptance_required``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.errors import PolicyVersionMismatch
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.identity.user.service import accept_current_policies


@dataclass(frozen=True)
class DocumentStatus:
    current_version: str
    accepted_version: str | None
    accepted_at: datetime | None

    @property
    def up_to_date(self) -> bool:
        return self.accepted_version == self.current_version


@dataclass(frozen=True)
class PolicyStatus:
    terms: DocumentStatus
    privacy: DocumentStatus

    @property
    def acceptance_required(self) -> bool:
        return not (self.terms.up_to_date and self.privacy.up_to_date)


async def status(session: AsyncSession, rt: IdentityRuntime, user_id: str) -> PolicyStatus:
    user = await user_repository.get(session, user_id)
    assert user is not None  # the caller holds a live session of this user
    return PolicyStatus(
        terms=DocumentStatus(rt.settings.terms_version, user.terms_version, user.terms_accepted_at),
        privacy=DocumentStatus(
            rt.settings.privacy_version, user.privacy_version, user.privacy_accepted_at
        ),
    )


async def accept(
    session: AsyncSession,
    rt: IdentityRuntime,
    user_id: str,
    *,
    terms_version: str,
    privacy_version: str,
) -> PolicyStatus:
    """Raises :class:`PolicyVersionMismatch` unless both versions are the current ones (the
    client must show what it asks the user to accept)."""
    if terms_version != rt.settings.terms_version or (
        privacy_version != rt.settings.privacy_version
    ):
        raise PolicyVersionMismatch("Accept the current versions; reload them first.")
    user = await user_repository.get(session, user_id)
    assert user is not None
    accept_current_policies(rt, user)
    await session.flush()
    session_service.forget_user(session, rt, user_id)
    await record(
        session,
        AuditAction.POLICY_ACCEPTED,
        actor=Actor.user(user_id),
        target_type="user",
        target_id=user_id,
        details={"terms_version": terms_version, "privacy_version": privacy_version},
    )
    return await status(session, rt, user_id)
