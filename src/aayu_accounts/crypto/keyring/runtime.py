"""Loading the keyring at start-up and keeping it fresh while the process runs.

Start-up (app lifespan, CLI commands) calls :func:`start_keyring`: it reads the master key from
the secret store, creates the first version of any missing key, unwraps every active version
and installs the keyring process-wide. A background task reloads it every
``keyring_refresh_seconds`` so a rotation made elsewhere (another instance, the CLI) reaches
this process before the new version activates (``key_activation_delay_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import IntegrityError

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import repository
from aayu_accounts.crypto.keyring import tasks as _tasks  # noqa: F401 - registers the job handler
from aayu_accounts.crypto.keyring.core import Keyring
from aayu_accounts.crypto.keyring.master import MasterKeys, load_master_keys
from aayu_accounts.crypto.keyring.process import install_keyring
from aayu_accounts.crypto.secret_store.base import SecretStore
from aayu_accounts.crypto.secret_store.factory import build_secret_store
from aayu_accounts.db import Database

log = structlog.get_logger(__name__)


async def load_from_database(db: Database, master: MasterKeys) -> Keyring:
    """Bootstrap missing keys (once, race-safe) and load every active version."""
    for attempt in range(3):
        try:
            async with db.session_scope() as session:
                created = await repository.ensure_keys(session, master)
                keyring = await repository.load_keyring(session, master)
        except IntegrityError:
            # Another process bootstrapped the same purposes first: load theirs.
            if attempt == 2:
                raise
            continue
        if created:
            log.info("keyring.bootstrapped", purposes=[p.value for p in created])
        return keyring
    raise AssertionError("unreachable")


@dataclass
class KeyringRuntime:
    """What :func:`start_keyring` started; :meth:`stop` undoes it."""

    keyring: Keyring
    store: SecretStore | None
    master: MasterKeys | None
    _previous: Keyring | None
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def refresh(self, db: Database) -> Keyring:
        """Reload from the secret store and database now, and install the result."""
        if self.store is None:
            return self.keyring
        self.master = await load_master_keys(self.store)
        async with db.session_scope(write=False) as session:
            self.keyring = await repository.load_keyring(session, self.master)
        install_keyring(self.keyring)
        return self.keyring

    async def _refresh_forever(self, db: Database, interval: float) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            if self._stop.is_set():
                return
            try:
                await self.refresh(db)
            except Exception as exc:  # keep serving with the keys we have
                log.warning("keyring.refresh_failed", error_type=type(exc).__name__)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)
        if self.store is not None:
            await self.store.close()
        install_keyring(self._previous)


async def start_keyring(
    settings: Settings,
    db: Database,
    *,
    keyring: Keyring | None = None,
    store: SecretStore | None = None,
    refresh: bool = True,
) -> KeyringRuntime:
    """Load and install the process keyring. A given ``keyring`` (tests) is installed as is."""
    if keyring is not None:
        return KeyringRuntime(keyring, None, None, install_keyring(keyring))
    store = store or build_secret_store(settings)
    master = await load_master_keys(store)
    loaded = await load_from_database(db, master)
    runtime = KeyringRuntime(loaded, store, master, install_keyring(loaded))
    if refresh:
        runtime._task = asyncio.create_task(
            runtime._refresh_forever(db, settings.keyring_refresh_seconds),
            name="aayu-keyring-refresh",
        )
    return runtime


@contextlib.asynccontextmanager
async def keyring_scope(settings: Settings, db: Database) -> AsyncIterator[KeyringRuntime]:
    """The keyring loaded for the length of a CLI command or a script (no refresh task)::

    async with keyring_scope(current_settings, db):
        ...  # encrypted fields work here
    """
    runtime = await start_keyring(settings, db, refresh=False)
    try:
        yield runtime
    finally:
        await runtime.stop()
