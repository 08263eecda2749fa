"""Queries on invitations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.invitation import Invitation


async def add(session: AsyncSession, invitation: Invitation) -> Invitation:
    session.add(invitation)
    await session.flush()
    return invitation


async def revoke_pending_for(session: AsyncSession, org_id: str, email: str, now: datetime) -> None:
    """A newer invitation replaces older pending ones to the same address."""
    await session.execute(
        update(Invitation)
        .where(Invitation.org_id == org_id)
        .where(Invitation.email.matches(email))
        .where(Invitation.accepted_at.is_(None))
        .where(Invitation.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def by_token_hash(session: AsyncSession, token_hash: str) -> Invitation | None:
    return await session.scalar(
        select(Invitation).where(Invitation.token_hash == token_hash).with_for_update()
    )
