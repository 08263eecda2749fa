"""Which key versions stored data still uses, found through the encrypted-field registry.

Ciphertexts start with a 5-byte header (format, version) and blind indexes with a 4-byte
version, so both databases answer with ``substr`` on the raw bytes: no row is decrypted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from sqlalchemy import LargeBinary, MetaData, func, literal, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from aayu_accounts.crypto.field_encryption import FieldSpec, encrypted_fields
from aayu_accounts.crypto.keyring.core import (
    BLIND_INDEX_BYTES,
    HEADER_BYTES,
    blind_index_prefix,
    ciphertext_header,
)
from aayu_accounts.crypto.keyring.purposes import KeyPurpose

_PREFIX = {True: HEADER_BYTES, False: BLIND_INDEX_BYTES - 32}

UsageCounter = Callable[[AsyncSession], Awaitable[Counter[int]]]
# Values sealed outside the encrypted-field registry (a job's payload, say): their owners
# register how to count them, so a version they use is never retired under them.
_extra_counters: dict[KeyPurpose, list[UsageCounter]] = {}


def register_usage_counter(purpose: KeyPurpose, counter: UsageCounter) -> None:
    """Count values of ``purpose`` stored where the registry cannot see them (idempotent)."""
    counters = _extra_counters.setdefault(purpose, [])
    if counter not in counters:
        counters.append(counter)


def raw(spec: FieldSpec, *, index: bool = False) -> ColumnElement[bytes]:
    """The column's stored bytes, bypassing the type that refuses plain bytes."""
    name = spec.index_name if index else spec.column_name
    assert name is not None
    return type_coerce(spec.table.c[name], LargeBinary)


def prefix_of(spec: FieldSpec, *, index: bool = False) -> ColumnElement[bytes]:
    length = _PREFIX[not index]
    return func.substr(raw(spec, index=index), 1, length, type_=LargeBinary)


def header_literal(purpose: KeyPurpose, version: int) -> ColumnElement[bytes]:
    if purpose is KeyPurpose.BLIND_INDEX:
        return literal(blind_index_prefix(version), LargeBinary)
    return literal(ciphertext_header(version), LargeBinary)


def _specs_for(purpose: KeyPurpose, metadata: MetaData | None) -> list[tuple[FieldSpec, bool]]:
    """(field, is_index) pairs whose stored values depend on ``purpose``'s keys."""
    found: list[tuple[FieldSpec, bool]] = []
    for spec in encrypted_fields(metadata):
        if purpose is KeyPurpose.BLIND_INDEX and spec.index_key is not None:
            found.append((spec, True))
        elif spec.purpose is purpose:
            found.append((spec, False))
    return found


async def rows_per_version(
    session: AsyncSession, purpose: KeyPurpose, metadata: MetaData | None = None
) -> Counter[int]:
    """How many stored values use each version of ``purpose`` (empty for signing keys)."""
    counts: Counter[int] = Counter()
    length = _PREFIX[purpose is not KeyPurpose.BLIND_INDEX]
    for spec, index in _specs_for(purpose, metadata):
        prefix = prefix_of(spec, index=index)
        query = (
            select(prefix, func.count())
            .select_from(spec.table)
            .where(raw(spec, index=index).is_not(None))
            .group_by(prefix)
        )
        for value, count in (await session.execute(query)).all():
            header = bytes(value)
            if len(header) == length:
                counts[int.from_bytes(header[length - 4 :], "big")] += int(count)
    for counter in _extra_counters.get(purpose, ()):
        counts.update(await counter(session))
    return counts
