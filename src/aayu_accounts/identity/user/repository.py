"""Queries on users, their email tokens and their recovery codes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.email_token import EmailToken
from aayu_accounts.models.recovery_code import RecoveryCode
from aayu_accounts.models.user import User


async def get(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """Through the blind index: the address itself is never in the query."""
    return await session.scalar(select(User).where(User.email.matches(email)))


async def add(session: AsyncSession, user: User) -> User:
    session.add(user)
    await session.flush()
    return user


async def add_email_token(session: AsyncSession, token: EmailToken) -> EmailToken:
    """Adds ``token`` and retires every unused older token of the same purpose."""
    await session.execute(
        update(EmailToken)
        .where(EmailToken.user_id == token.user_id)
        .where(EmailToken.purpose == token.purpose)
        .where(EmailToken.used_at.is_(None))
        .values(used_at=token.created_at)
    )
    session.add(token)
    await session.flush()
    return token


async def find_email_token(
    session: AsyncSession, token_hash: str, purpose: str
) -> EmailToken | None:
    return await session.scalar(
        select(EmailToken)
        .where(EmailToken.token_hash == token_hash)
        .where(EmailToken.purpose == purpose)
        .with_for_update()
    )


async def retire_email_tokens(
    session: AsyncSession, user_id: str, purpose: str, moment: datetime
) -> None:
    await session.execute(
        update(EmailToken)
        .where(EmailToken.user_id == user_id)
        .where(EmailToken.purpose == purpose)
        .where(EmailToken.used_at.is_(None))
        .values(used_at=moment)
    )


async def unused_recovery_codes(session: AsyncSession, user_id: str) -> Sequence[RecoveryCode]:
    query = (
        select(RecoveryCode)
        .where(RecoveryCode.user_id == user_id)
        .where(RecoveryCode.used_at.is_(None))
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def replace_recovery_codes(
    session: AsyncSession, user_id: str, code_hashes: Sequence[str]
) -> None:
    existing = await session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user_id))
    for code in existing:
        await session.delete(code)
    session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in code_hashes)
    await session.flush()
