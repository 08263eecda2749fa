"""The database document store (the new path) and the legacy links it needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.kit import clock
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user_document import UserDocument


class DatabaseDocumentStore:
    """Same operations as ``LegacyDocumentStore``, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_keys(self, subject: str) -> list[str]:
        rows = await self.session.scalars(
            select(UserDocument.key)
            .where(UserDocument.subject == subject)
            .order_by(UserDocument.key)
        )
        return list(rows.all())

    async def get(self, subject: str, key: str) -> dict[str, Any] | None:
        return await self.session.scalar(
            select(UserDocument.document).where(
                UserDocument.subject == subject, UserDocument.key == key
            )
        )

    async def put(self, subject: str, key: str, document: dict[str, Any]) -> None:
        row = await self.session.scalar(
            select(UserDocument)
            .where(UserDocument.subject == subject, UserDocument.key == key)
            .with_for_update()
        )
        now = clock.now()
        if row is None:
            self.session.add(
                UserDocument(
                    subject=subject, key=key, document=document, created_at=now, updated_at=now
                )
            )
        else:
            row.document = document
            row.updated_at = now
        await self.session.flush()

    async def delete(self, subject: str, key: str) -> bool:
        result = await self.session.execute(
            delete(UserDocument).where(UserDocument.subject == subject, UserDocument.key == key)
        )
        return bool(getattr(result, "rowcount", 0))

    async def subjects(self) -> list[str]:
        rows = await self.session.scalars(
            select(UserDocument.subject).distinct().order_by(UserDocument.subject)
        )
        return list(rows.all())


async def legacy_subject_of(session: AsyncSession, user_id: str) -> str | None:
    return await session.scalar(
        select(LegacyUserLink.legacy_subject).where(LegacyUserLink.user_id == user_id)
    )


async def user_of_legacy_subject(session: AsyncSession, subject: str) -> str | None:
    return await session.scalar(
        select(LegacyUserLink.user_id).where(LegacyUserLink.legacy_subject == subject)
    )
