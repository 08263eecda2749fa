"""A test-only table with encrypted fields, in its own metadata (not the application's)."""

from __future__ import annotations

from sqlalchemy import MetaData, String
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import (
    BlindIndexColumn,
    EncryptedColumn,
    EncryptedField,
    normalize_email,
)
from aayu_accounts.kit.ids import new_id


class SampleBase(DeclarativeBase):
    metadata = MetaData()


class Person(SampleBase):
    __tablename__ = "crypto_test_people"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    email_index: Mapped[bytes] = mapped_column(BlindIndexColumn(), unique=True)
    name_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    phone_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())

    email = EncryptedField(
        "email_ciphertext", index="email_index", index_kind="email", normalize=normalize_email
    )
    name = EncryptedField("name_ciphertext")
    phone = EncryptedField("phone_ciphertext")


async def create_sample_tables(connection: AsyncConnection) -> None:
    await connection.run_sync(SampleBase.metadata.create_all)


async def drop_sample_tables(connection: AsyncConnection) -> None:
    await connection.run_sync(SampleBase.metadata.drop_all)
