"""Key rotation and retirement: the rules, and the events the composition root audits.

The keyring sits below the audit module (audit signs its checkpoints with a keyring key), so
it cannot call audit itself; it reports each change to a :class:`KeyEventRecorder` that the CLI
(or any other caller) wires to ``audit.service.record`` in the same transaction. Like every
service, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring import repository
from aayu_accounts.crypto.keyring.core import Keyring
from aayu_accounts.crypto.keyring.master import MasterKeys, load_master_keys
from aayu_accounts.crypto.keyring.purposes import MASTER_KEY_SECRET, KeyPurpose, KeyUse
from aayu_accounts.crypto.keyring.usage import rows_per_version
from aayu_accounts.crypto.secret_store.base import SecretNotFound, SecretStore
from aayu_accounts.kit import clock
from aayu_accounts.models.key_version import ACTIVE

MASTER = "master"
KEY_NAMES: tuple[str, ...] = (*(p.value for p in KeyPurpose), MASTER)

EventKind = Literal["created", "rotated", "retired", "reencrypted"]


@dataclass(frozen=True)
class KeyEvent:
    kind: EventKind
    name: str
    version: str | None
    details: dict[str, Any] = field(default_factory=dict)


# Called with the caller's session, so the audit row joins the key change's transaction.
KeyEventRecorder = Callable[[AsyncSession, KeyEvent], Awaitable[None]]


async def no_recorder(_session: AsyncSession, _event: KeyEvent) -> None:
    """For tools and tests that do not audit (the CLI always passes the audit recorder)."""


class UnknownKeyName(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown key {name!r}; known: {', '.join(KEY_NAMES)}")


class KeyStillUsed(Exception):
    """Retirement refused: stored data (or the current signer) still needs this version."""


class KeyVersionNotFound(Exception):
    pass


def purpose_of(name: str) -> KeyPurpose:
    try:
        return KeyPurpose(name)
    except ValueError:
        raise UnknownKeyName(name) from None


@dataclass(frozen=True)
class KeyStatus:
    name: str
    version: str
    state: str
    created_at: datetime | None
    activates_at: datetime | None
    retired_at: datetime | None
    current: bool
    rows: int | None  # stored values using it (encryption and index keys only)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "activates_at": self.activates_at.isoformat() if self.activates_at else None,
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
            "current": self.current,
            "rows": self.rows,
        }


async def rotate(
    session: AsyncSession,
    store: SecretStore,
    name: str,
    *,
    activation_delay: timedelta,
    recorder: KeyEventRecorder,
) -> str:
    """Create a new version of ``name``; returns it. Older versions keep working.

    A keyring key's new version is published now and signs/encrypts after
    ``activation_delay``. A new master key version is written to the secret store and every
    active key version is re-wrapped under it at once (data is untouched).
    """
    if name == MASTER:
        return await _rotate_master(session, store, recorder)
    purpose = purpose_of(name)
    master = await load_master_keys(store)
    activates_at = clock.now() + activation_delay
    record = await repository.add_version(session, master, purpose, activates_at=activates_at)
    await recorder(
        session,
        KeyEvent(
            "rotated",
            name,
            str(record.version),
            {"version": record.version, "activates_at": activates_at.isoformat()},
        ),
    )
    return str(record.version)


class MasterKeyExists(Exception):
    pass


async def init_master(
    session: AsyncSession, store: SecretStore, *, recorder: KeyEventRecorder
) -> str:
    """Create version 1 of the master key in the store (production's first start).

    Development generates it on first use; remote stores and the production file provider do
    not, so an operator runs this once. Refused when a master key exists.
    """
    try:
        await store.list_versions(MASTER_KEY_SECRET)
    except SecretNotFound:
        pass
    else:
        raise MasterKeyExists("the secret store already has a master key; use `keys rotate master`")
    created = await store.set(MASTER_KEY_SECRET, primitives.encode_key(primitives.random_key()))
    await recorder(
        session, KeyEvent("created", MASTER, created.version, {"version": created.version})
    )
    return created.version


async def _rotate_master(
    session: AsyncSession, store: SecretStore, recorder: KeyEventRecorder
) -> str:
    old = await load_master_keys(store)
    created = await store.set(MASTER_KEY_SECRET, primitives.encode_key(primitives.random_key()))
    new = await load_master_keys(store)
    if new.current_version != created.version:
        raise RuntimeError("the secret store did not return the master key version just written")
    rewrapped = await repository.rewrap_all(session, old, new)
    await recorder(
        session,
        KeyEvent(
            "rotated", MASTER, created.version, {"version": created.version, "rewrapped": rewrapped}
        ),
    )
    return created.version


async def retire(
    session: AsyncSession,
    store: SecretStore,
    name: str,
    version: str,
    *,
    recorder: KeyEventRecorder,
    metadata: MetaData | None = None,
) -> None:
    """Retire a version for good (its key material is destroyed).

    Refused while it is the version that signs/encrypts, and, for encryption and blind-index
    keys, while any stored value still uses it (run ``keys reencrypt`` first).
    """
    if name == MASTER:
        raise KeyStillUsed(
            "master key versions are retired in the secret store itself, after "
            "`keys rotate master` re-wrapped every key (see docs/security.md)"
        )
    purpose = purpose_of(name)
    number = int(version)
    record = await repository.get_record(session, purpose, number)
    if record is None or record.state != ACTIVE:
        raise KeyVersionNotFound(f"{name} has no active version {version}")
    keyring = await _load(session, store)
    if keyring.current(purpose).version == number:
        raise KeyStillUsed(f"{name} version {version} is the current one; rotate first")
    in_use = (await rows_per_version(session, purpose, metadata)).get(number, 0)
    if in_use:
        raise KeyStillUsed(
            f"{in_use} stored values still use {name} version {version}; "
            "run `aayu-accounts keys reencrypt` first"
        )
    await repository.mark_retired(session, record)
    await recorder(session, KeyEvent("retired", name, version, {"version": number}))


async def _load(session: AsyncSession, store: SecretStore) -> Keyring:
    master = await load_master_keys(store)
    return await repository.load_keyring(session, master)


async def load_current_keyring(session: AsyncSession, store: SecretStore) -> Keyring:
    """The keyring as the database holds it now (for tools that must not use a stale one)."""
    return await _load(session, store)


async def status(
    session: AsyncSession,
    store: SecretStore,
    *,
    metadata: MetaData | None = None,
    count_rows: bool = True,
) -> list[KeyStatus]:
    """Every key version, its state, and how many stored values use it."""
    master = await load_master_keys(store)
    keyring = await repository.load_keyring(session, master)
    result: list[KeyStatus] = []
    usage: dict[KeyPurpose, dict[int, int]] = {}
    for record in await repository.records(session):
        purpose = KeyPurpose(record.purpose)
        signs = purpose.use in (KeyUse.SIGN, KeyUse.ASYMMETRIC_SIGN)  # no stored values
        if count_rows and purpose not in usage and not signs:
            usage[purpose] = dict(await rows_per_version(session, purpose, metadata))
        current = record.state == ACTIVE and keyring.current(purpose).version == record.version
        result.append(
            KeyStatus(
                name=purpose.value,
                version=str(record.version),
                state=record.state,
                created_at=record.created_at,
                activates_at=record.activates_at,
                retired_at=record.retired_at,
                current=current,
                rows=usage[purpose].get(record.version, 0) if purpose in usage else None,
            )
        )
    result.extend(_master_status(master))
    return result


def _master_status(master: MasterKeys) -> list[KeyStatus]:
    return [
        KeyStatus(
            name=MASTER,
            version=version,
            state=ACTIVE,
            created_at=None,
            activates_at=None,
            retired_at=None,
            current=version == master.current_version,
            rows=None,
        )
        for version in master.by_version
    ]
