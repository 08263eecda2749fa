"""Key versions in the database: bootstrap, load, add, retire, re-wrap. Queries only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring.core import Keyring, KeyVersion
from aayu_accounts.crypto.keyring.master import MasterKeys
from aayu_accounts.crypto.keyring.purposes import KeyPurpose
from aayu_accounts.kit import clock
from aayu_accounts.models.key_version import ACTIVE, RETIRED, KeyVersionRecord


def wrap_label(purpose: KeyPurpose, version: int) -> bytes:
    # Bound into the wrapping, so a wrapped key copied to another purpose/version row fails.
    return f"aayu-key|{purpose.value}|{version}".encode()


async def records(
    session: AsyncSession, purpose: KeyPurpose | None = None
) -> list[KeyVersionRecord]:
    query = select(KeyVersionRecord).order_by(KeyVersionRecord.purpose, KeyVersionRecord.version)
    if purpose is not None:
        query = query.where(KeyVersionRecord.purpose == purpose.value)
    return list((await session.scalars(query)).all())


async def ensure_keys(session: AsyncSession, master: MasterKeys) -> list[KeyPurpose]:
    """Create version 1 of every purpose that has no key yet; returns those created.

    Two processes bootstrapping at once collide on the (purpose, version) unique constraint;
    the loser's transaction fails and it loads what the winner made (see ``runtime``).
    """
    present = {r.purpose for r in await records(session)}
    created = [p for p in KeyPurpose if p.value not in present]
    now = clock.now()
    for purpose in created:
        await add_version(session, master, purpose, activates_at=now, version=1)
    return created


async def add_version(
    session: AsyncSession,
    master: MasterKeys,
    purpose: KeyPurpose,
    *,
    activates_at: datetime,
    version: int | None = None,
) -> KeyVersionRecord:
    if version is None:
        existing = await records(session, purpose)
        version = max((r.version for r in existing), default=0) + 1
    master_version, wrapped = master.wrap(primitives.random_key(), wrap_label(purpose, version))
    record = KeyVersionRecord(
        purpose=purpose.value,
        version=version,
        wrapped_key=wrapped,
        master_version=master_version,
        state=ACTIVE,
        created_at=clock.now(),
        activates_at=activates_at,
    )
    session.add(record)
    await session.flush()
    return record


async def load_keyring(session: AsyncSession, master: MasterKeys) -> Keyring:
    """Unwrap every active version. Raises if the master key cannot unwrap one of them."""
    versions: list[KeyVersion] = []
    for record in await records(session):
        if record.state != ACTIVE or record.wrapped_key is None or record.master_version is None:
            continue
        purpose = KeyPurpose(record.purpose)
        secret = master.unwrap(
            record.master_version, record.wrapped_key, wrap_label(purpose, record.version)
        )
        versions.append(KeyVersion(purpose, record.version, secret, record.activates_at))
    return Keyring(versions)


async def get_record(
    session: AsyncSession, purpose: KeyPurpose, version: int
) -> KeyVersionRecord | None:
    found: KeyVersionRecord | None = await session.scalar(
        select(KeyVersionRecord).where(
            KeyVersionRecord.purpose == purpose.value, KeyVersionRecord.version == version
        )
    )
    return found


async def mark_retired(session: AsyncSession, record: KeyVersionRecord) -> None:
    record.state = RETIRED
    record.retired_at = clock.now()
    # Destroy the key material: retirement is final (and the answer to a leaked key).
    record.wrapped_key = None
    record.master_version = None
    await session.flush()


async def rewrap_all(session: AsyncSession, old: MasterKeys, new: MasterKeys) -> int:
    """Re-wrap every active version under ``new``'s current master key; returns the count."""
    count = 0
    for record in await records(session):
        if record.state != ACTIVE or record.wrapped_key is None or record.master_version is None:
            continue
        label = wrap_label(KeyPurpose(record.purpose), record.version)
        secret = old.unwrap(record.master_version, record.wrapped_key, label)
        record.master_version, record.wrapped_key = new.wrap(secret, label)
        count += 1
    await session.flush()
    return count
