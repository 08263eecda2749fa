"""The database document store (the new path) and the legacy links it needs."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.kit import clock
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user_document import UserDocument


def document_of(row: UserDocument) -> dict[str, Any]:
    """The row's document: the sealed content, or a not yet sealed row's plaintext."""
    if row.document_ciphertext is not None:
        content = row.content
        assert content is not None
        document: dict[str, Any] = json.loads(content)
        return document
    return dict(row.document or {})


def seal_document(row: UserDocument, document: dict[str, Any]) -> None:
    """Store ``document`` sealed in ``row`` (and drop any plaintext it had)."""
    row.content = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    row.document = None


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
        row = await self.session.scalar(
            select(UserDocument).where(UserDocument.subject == subject, UserDocument.key == key)
        )
        return None if row is None else document_of(row)

    async def put(self, subject: str, key: str, document: dict[str, Any]) -> None:
        row = await self.session.scalar(
            select(UserDocument)
            .where(UserDocument.subject == subject, UserDocument.key == key)
            .with_for_update()
        )
        now = clock.now()
        if row is None:
            row = UserDocument(subject=subject, key=key, created_at=now)
            self.session.add(row)
        seal_document(row, document)
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


SEAL_BATCH = 200


async def seal_plaintext_documents(session: AsyncSession, *, limit: int = SEAL_BATCH) -> int:
    """Seal up to ``limit`` documents still stored in plaintext (rows written before migration
    0011); how many were sealed. Each row is locked so a concurrent write is not undone."""
    rows = (
        await session.scalars(
            select(UserDocument)
            .where(UserDocument.document_ciphertext.is_(None))
            .order_by(UserDocument.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for row in rows:
        seal_document(row, dict(row.document or {}))
    await session.flush()
    return len(rows)
