"""Move stored ciphertexts (and blind indexes) to the current key versions, in batches.

Resumable by construction: a row needs work exactly while its header names an older version,
so each batch commits on its own and a re-run (after a crash, ^C, or a new rotation) continues
with what is left. Rows are read and written with Core statements through the field registry,
so tables added later are covered without changes here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import MetaData, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from aayu_accounts.crypto.field_encryption import (
    BlindIndexValue,
    FieldSpec,
    Sealed,
    associated_data,
    encrypted_fields,
)
from aayu_accounts.crypto.keyring.core import Keyring
from aayu_accounts.crypto.keyring.purposes import KeyPurpose
from aayu_accounts.crypto.keyring.usage import header_literal, prefix_of, raw
from aayu_accounts.db import Database

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class FieldProgress:
    table: str
    column: str
    pending: int


def _stale(spec: FieldSpec, keyring: Keyring) -> ColumnElement[bool]:
    current = keyring.current(spec.purpose).version
    conditions = [
        and_(
            raw(spec).is_not(None),
            prefix_of(spec) != header_literal(spec.purpose, current),
        )
    ]
    if spec.index_name is not None:
        index_version = keyring.current(KeyPurpose.BLIND_INDEX).version
        conditions.append(
            and_(
                raw(spec, index=True).is_not(None),
                prefix_of(spec, index=True)
                != header_literal(KeyPurpose.BLIND_INDEX, index_version),
            )
        )
    return or_(*conditions)


def _primary_key(spec: FieldSpec) -> ColumnElement[object]:
    names = spec.primary_key_names
    if len(names) != 1:
        raise NotImplementedError("re-encryption needs a single-column primary key")
    return spec.table.c[names[0]]


async def pending(
    session: AsyncSession, keyring: Keyring, metadata: MetaData | None = None
) -> list[FieldProgress]:
    """Rows per encrypted field that still use an older key version."""
    found: list[FieldProgress] = []
    for spec in encrypted_fields(metadata):
        count = await session.scalar(
            select(func.count()).select_from(spec.table).where(_stale(spec, keyring))
        )
        found.append(FieldProgress(spec.table.name, spec.column_name, int(count or 0)))
    return found


async def reencrypt_batch(
    session: AsyncSession,
    keyring: Keyring,
    spec: FieldSpec,
    *,
    after: object | None,
    limit: int,
) -> tuple[int, object | None]:
    """Re-encrypt up to ``limit`` stale rows with a primary key above ``after``.

    Returns (rows rewritten, last primary key seen, or None when the field is done).
    """
    pk = _primary_key(spec)
    query = select(pk, raw(spec)).where(_stale(spec, keyring)).order_by(pk).limit(limit)
    if after is not None:
        query = query.where(pk > after)
    rows = (await session.execute(query)).all()
    rewritten = 0
    for row_id, stored in rows:
        ciphertext = bytes(stored)
        aad = associated_data(spec.table.name, spec.column_name, str(row_id))
        plaintext = keyring.decrypt(spec.purpose, ciphertext, aad)
        values: dict[str, bytes] = {
            spec.column_name: Sealed(keyring.encrypt(spec.purpose, plaintext, aad))
        }
        if spec.index_name is not None:
            values[spec.index_name] = spec.index_of(keyring, plaintext.decode())
            assert isinstance(values[spec.index_name], BlindIndexValue)
        # Compare-and-set: a row rewritten meanwhile by the application is already current.
        result = await session.execute(
            update(spec.table)
            .where(pk == row_id, raw(spec) == ciphertext)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        rewritten += result.rowcount  # type: ignore[attr-defined]
    last = rows[-1][0] if len(rows) == limit else None
    return rewritten, last


async def reencrypt_all(
    db: Database,
    keyring: Keyring,
    *,
    metadata: MetaData | None = None,
    batch_size: int = 500,
    on_progress: ProgressCallback | None = None,
    max_batches: int | None = None,
) -> int:
    """Re-encrypt every stale row, one committed transaction per batch; returns rows done.

    ``max_batches`` stops early (tests simulate an interruption with it).
    """
    total = 0
    batches = 0
    for spec in encrypted_fields(metadata):
        after: object | None = None
        while True:
            if max_batches is not None and batches >= max_batches:
                return total
            async with db.session_scope() as session:
                done, after = await reencrypt_batch(
                    session, keyring, spec, after=after, limit=batch_size
                )
            batches += 1
            total += done
            if on_progress is not None and done:
                on_progress(done)
            if after is None:
                break
    log.info("keyring.reencrypted", rows=total)
    return total
