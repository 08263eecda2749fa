"""Queries on sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.crypto.field_encryption import Sealed, seal
from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring
from aayu_accounts.models.auth_session import AuthSession
from aayu_accounts.models.mfa_challenge import MfaChallenge
from aayu_accounts.models.user import User


async def add(session: AsyncSession, auth_session: AuthSession) -> AuthSession:
    session.add(auth_session)
    await session.flush()
    return auth_session


async def live_with_user(session: AsyncSession, token_hash: str) -> tuple[AuthSession, User] | None:
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == token_hash)
            .where(AuthSession.revoked_at.is_(None))
        )
    ).first()
    return (row[0], row[1]) if row else None


async def by_token_hash(session: AsyncSession, token_hash: str) -> AuthSession | None:
    return await session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash))


async def get_for_user(session: AsyncSession, session_id: str, user_id: str) -> AuthSession | None:
    return await session.scalar(
        select(AuthSession).where(AuthSession.id == session_id, AuthSession.user_id == user_id)
    )


async def live_for_user(
    session: AsyncSession, user_id: str, now: datetime
) -> Sequence[AuthSession]:
    query = (
        select(AuthSession)
        .where(AuthSession.user_id == user_id)
        .where(AuthSession.revoked_at.is_(None))
        .where(AuthSession.expires_at > now)
        .order_by(AuthSession.created_at.desc())
    )
    return (await session.scalars(query)).all()


async def revoke_where(
    session: AsyncSession,
    *,
    user_id: str,
    now: datetime,
    reason: str,
    except_id: str | None = None,
) -> list[str]:
    """Revoke the user's live sessions (all, or all but one); returns their token hashes."""
    query = select(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if except_id is not None:
        query = query.where(AuthSession.id != except_id)
    revoked = list((await session.scalars(query)).all())
    for item in revoked:
        item.revoked_at = now
        item.revoke_reason = reason
    await session.flush()
    return [item.token_hash for item in revoked]


async def touch(
    session: AsyncSession,
    session_id: str,
    *,
    now: datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    # One UPDATE without loading the row: the new values are sealed here, bound to the row as
    # EncryptedField binds them.
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .where(AuthSession.revoked_at.is_(None))
        .values(
            last_seen_at=now,
            ip_ciphertext=_sealed("ip_ciphertext", session_id, ip),
            user_agent_ciphertext=_sealed("user_agent_ciphertext", session_id, user_agent),
        )
    )


def _sealed(column: str, session_id: str, value: str | None) -> Sealed | None:
    if value is None:
        return None
    table = AuthSession.__tablename__
    return seal(
        get_keyring(), KeyPurpose.DATA, value, table=table, column=column, row_id=session_id
    )


async def add_challenge(session: AsyncSession, challenge: MfaChallenge) -> MfaChallenge:
    session.add(challenge)
    await session.flush()
    return challenge


async def find_challenge(session: AsyncSession, token_hash: str) -> MfaChallenge | None:
    return await session.scalar(
        select(MfaChallenge).where(MfaChallenge.token_hash == token_hash).with_for_update()
    )
