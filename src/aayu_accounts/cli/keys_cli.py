"""``aayu-accounts keys list|rotate|retire|reencrypt``: the keyring's operator commands.

Each change is audited in the same transaction (``crypto:key:rotated``, ``crypto:key:retired``,
``crypto:data:reencrypted``): the keyring reports events and this composition root records them.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import service as keys
from aayu_accounts.crypto.keyring.reencrypt import pending, reencrypt_all
from aayu_accounts.crypto.keyring.runtime import keyring_scope
from aayu_accounts.crypto.keyring.tasks import enqueue_reencryption
from aayu_accounts.crypto.secret_store.factory import build_secret_store
from aayu_accounts.db import Database

# Imported for its registration: reset jobs' sealed addresses count as uses of a data key.
from aayu_accounts.identity.user import service as _user_service  # noqa: F401
from aayu_accounts.kit import resilience
from aayu_accounts.models import Base

app = typer.Typer(help="Keys: list, rotate, retire, re-encrypt.", no_args_is_help=True)

T = TypeVar("T")

_ACTIONS = {
    "created": AuditAction.KEY_CREATED,
    "rotated": AuditAction.KEY_ROTATED,
    "retired": AuditAction.KEY_RETIRED,
    "reencrypted": AuditAction.DATA_REENCRYPTED,
}


async def audit_key_event(session: AsyncSession, event: keys.KeyEvent) -> None:
    await record(
        session,
        _ACTIONS[event.kind],
        actor=Actor.system("cli"),
        target_type="key",
        target_id=event.name,
        details=event.details,
    )


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(1)


def _settings() -> Settings:
    """The settings, with the AAYU_SECRET_STORE_* timeout/retry/breaker policy applied (the
    server applies it at start-up; a command talks to the same remote secret store)."""
    current = settings()
    resilience.configure(current)
    return current


def _run(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run ``work`` with the keyring loaded (it bootstraps missing keys on a fresh database)."""
    current = _settings()

    async def runner(db: Database) -> T:
        async with keyring_scope(current, db):
            return await work(db, current)

    try:
        return run_with_db(runner)
    except (keys.KeyStillUsed, keys.KeyVersionNotFound, keys.UnknownKeyName) as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc


NameArgument = Annotated[str, typer.Argument(help=f"One of: {', '.join(keys.KEY_NAMES)}")]


@app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """Every key version: state, when it activates, and how many stored values use it."""

    async def work(db: Database, current: Settings) -> list[keys.KeyStatus]:
        async with db.session_scope(write=False) as session:
            return await keys.status(session, build_secret_store(current), metadata=Base.metadata)

    found = _run(work)
    if as_json:
        emit_json([item.as_json() for item in found])
        return
    for item in found:
        marks = " (current)" if item.current else ""
        rows = "" if item.rows is None else f", {item.rows} stored values"
        activates = f", activates {item.activates_at.isoformat()}" if item.activates_at else ""
        typer.echo(f"{item.name} v{item.version}: {item.state}{marks}{activates}{rows}")


@app.command()
def rotate(
    name: NameArgument,
    activate_in: float | None = typer.Option(
        None,
        "--activate-in",
        help="Seconds before the new version signs/encrypts "
        "(default AAYU_KEY_ACTIVATION_DELAY_SECONDS)",
        min=0,
    ),
) -> None:
    """Create a new version of NAME; older versions keep verifying/decrypting until retired."""

    async def work(db: Database, current: Settings) -> str:
        delay = timedelta(
            seconds=current.key_activation_delay_seconds if activate_in is None else activate_in
        )
        async with db.session_scope() as session:
            return await keys.rotate(
                session,
                build_secret_store(current),
                name,
                activation_delay=delay,
                recorder=audit_key_event,
            )

    version = _run(work)
    typer.echo(f"{name} rotated: version {version}", err=True)
    if name in ("data", "client-secret", "blind-index"):
        typer.echo(
            "once it is active (see `keys list`), run `keys reencrypt`, then retire the old "
            "version",
            err=True,
        )


@app.command("init-master")
def init_master() -> None:
    """Create the master key in the secret store (once, before the first production start)."""
    current = _settings()

    async def work(db: Database) -> str:
        async with db.session_scope() as session:
            return await keys.init_master(
                session, build_secret_store(current), recorder=audit_key_event
            )

    try:
        version = run_with_db(work)
    except keys.MasterKeyExists as exc:
        _fail(str(exc))
        return
    typer.echo(f"master key created: version {version}", err=True)


@app.command()
def retire(
    name: NameArgument,
    version: str = typer.Argument(..., help="The version to retire"),
) -> None:
    """Destroy VERSION of NAME. Refused while it is current or stored data still uses it."""

    async def work(db: Database, current: Settings) -> None:
        async with db.session_scope() as session:
            await keys.retire(
                session,
                build_secret_store(current),
                name,
                version,
                recorder=audit_key_event,
                metadata=Base.metadata,
            )

    _run(work)
    typer.echo(f"{name} version {version} retired", err=True)


@app.command()
def reencrypt(
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Rows per transaction"),
    background: bool = typer.Option(
        False, "--background", help="Leave the work to the job worker instead of doing it here"
    ),
) -> None:
    """Move every stored ciphertext and blind index to the current key versions.

    Each batch commits on its own: interrupt it at any time and run it again to continue.
    """
    if background:
        _enqueue_reencryption(batch_size)
        return

    async def work(db: Database, current: Settings) -> int:
        store = build_secret_store(current)
        async with db.session_scope(write=False) as session:
            keyring = await keys.load_current_keyring(session, store)
            todo = sum(p.pending for p in await pending(session, keyring, Base.metadata))
        console = Console(stderr=True)
        with Progress(
            TextColumn("re-encrypting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as progress:
            task = progress.add_task("rows", total=todo)
            done = await reencrypt_all(
                db,
                keyring,
                metadata=Base.metadata,
                batch_size=batch_size,
                on_progress=lambda n: progress.advance(task, n),
            )
        async with db.session_scope() as session:
            await audit_key_event(
                session,
                keys.KeyEvent("reencrypted", "data", None, {"rows": done}),
            )
        return done

    done = _run(work)
    typer.echo(f"re-encrypted {done} values", err=True)


def _enqueue_reencryption(batch_size: int) -> None:
    async def work(db: Database, _current: Settings) -> None:
        async with db.session_scope() as session:
            await enqueue_reencryption(session, batch_size=batch_size)

    _run(work)
    typer.echo("re-encryption queued for the job worker", err=True)
