"""``aayu-accounts audit verify|export|checkpoint|archive|verify-archive|public-key``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from aayu_accounts.audit import archive, tasks
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.checkpoint import (
    CheckpointVerifier,
    KeyringCheckpointSigner,
    PublicKeyVerifier,
    public_keys_document,
)
from aayu_accounts.audit.schemas import ExportFormat
from aayu_accounts.audit.service import Actor, EventQuery, start_export, stream_export
from aayu_accounts.audit.storage import checkpoint_targets, load_all
from aayu_accounts.audit.verify import VerifyReport, verify_chain
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database

app = typer.Typer(help="The audit trail: verify, export, checkpoints, retention.")

T = TypeVar("T")
CLI_ACTOR = Actor.system("cli")


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(1)


def _with_keyring(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run ``work`` with the process keyring loaded (the checkpoint key lives in it)."""
    current = settings()

    async def runner(db: Database) -> T:
        runtime = await start_keyring(current, db, refresh=False)
        try:
            return await work(db, current)
        finally:
            await runtime.stop()

    return run_with_db(runner)


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if report.problem is None:
        span = (
            f"events {report.first_sequence}..{report.last_sequence}"
            if report.checked
            else "no events"
        )
        typer.echo(
            f"audit chain OK: {span} ({report.checked} checked), "
            f"{report.checkpoints_checked} checkpoint(s) matched"
        )
    else:
        where = f" at event {report.problem.sequence}" if report.problem.sequence else ""
        typer.echo(
            f"audit chain BROKEN{where}: {report.problem.kind}: {report.problem.detail}",
            err=not as_json,
        )


def _public_keys(path: Path) -> PublicKeyVerifier:
    try:
        return PublicKeyVerifier.from_document(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{path} is not an audit public-keys file ({type(exc).__name__})")
        raise


PUBLIC_KEYS_HELP = (
    "Verify signatures with these public keys alone (the JSON of `audit public-key --json`) "
    "instead of the keyring"
)


@app.command()
def verify(
    from_sequence: int | None = typer.Option(
        None, "--from", min=1, help="Start at this sequence (its link backwards is trusted)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON"),
    public_keys: Annotated[
        Path | None,
        typer.Option("--public-keys", exists=True, dir_okay=False, help=PUBLIC_KEYS_HELP),
    ] = None,
) -> None:
    """Recompute the hash chain and check the signed checkpoints (the directory's and the
    object store's); exit 1 on any problem."""
    verifier: CheckpointVerifier = (
        _public_keys(public_keys) if public_keys else KeyringCheckpointSigner()
    )

    async def work(db: Database, current: Settings) -> VerifyReport:
        loaded = await load_all(checkpoint_targets(current).all(), verifier)
        async with db.session_scope(write=False) as session:
            return await verify_chain(session, from_sequence=from_sequence, checkpoints=loaded)

    if public_keys:
        current = settings()
        report = run_with_db(lambda db: work(db, current))
    else:
        report = _with_keyring(work)
    _print_report(report, as_json)
    if not report.ok:
        sys.exit(1)


@app.command("public-key")
def public_key(
    as_json: bool = typer.Option(
        False, "--json", help="The public-keys file that --public-keys reads"
    ),
) -> None:
    """Print the audit signing public keys (Ed25519), every loaded version: what an auditor
    needs to verify checkpoints and archives without any secret."""

    async def work(_db: Database, _settings: Settings) -> dict[str, Any]:
        return dict(public_keys_document(KeyringCheckpointSigner().public_keys()))

    document = _with_keyring(work)
    if as_json:
        emit_json(document)
        return
    for entry in document["keys"]:
        marker = " (current)" if entry["current"] else ""
        typer.echo(f"{entry['key_id']} ed25519 {entry['public_key']}{marker}")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--{name} is not an RFC 3339 time")
        raise
    if moment.tzinfo is None:
        _fail(f"--{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    return moment


@app.command()
def export(  # noqa: PLR0917 - each option is a parameter; typer calls it by keyword
    org: str | None = typer.Option(None, "--org", help="One clinic (default: every event)"),
    output_format: Annotated[Format, typer.Option("--format", help="jsonl or csv")] = Format.jsonl,
    action: str | None = typer.Option(None, "--action", help="e.g. identity:login:failed"),
    actor_id: str | None = typer.Option(None, "--actor-id"),
    since: str | None = typer.Option(None, "--since", help="RFC 3339, inclusive"),
    until: str | None = typer.Option(None, "--until", help="RFC 3339, exclusive"),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout)")
    ] = None,
) -> None:
    """Export events as JSONL or CSV; the export is itself recorded in the trail."""
    try:
        chosen_action = AuditAction(action) if action else None
    except ValueError:
        _fail(f"unknown action {action!r}")
        raise
    query = EventQuery(
        action=chosen_action,
        actor_id=actor_id,
        since=_parse_time(since, "since"),
        until=_parse_time(until, "until"),
    )

    async def work(db: Database) -> int:
        current = settings()
        async with db.session_scope() as session:
            ticket = await start_export(
                session,
                actor=CLI_ACTOR,
                org_id=org,
                query=query,
                export_format=ExportFormat(output_format.value),
                exports_per_day=current.audit_exports_per_day,
            )
        lines = 0
        stream: Any = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            async for chunk in stream_export(db, ticket):
                stream.write(chunk)
                lines += 1
        finally:
            if output:
                stream.close()
        return lines

    written = run_with_db(work)
    if output:
        typer.echo(f"wrote {written} line(s) to {output}", err=True)


@app.command()
def checkpoint(as_json: bool = typer.Option(False, "--json")) -> None:
    """Sign and write a checkpoint of the chain head now (the leader does this hourly)."""

    async def work(db: Database, current: Settings) -> dict[str, Any]:
        written = await tasks.write_checkpoint(db, current, KeyringCheckpointSigner())
        return {"sequence": written.sequence, "hash": written.hash, "key_id": written.key_id}

    result = _with_keyring(work)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"checkpoint written at event {result['sequence']}")


@app.command("archive")
def archive_now(as_json: bool = typer.Option(False, "--json")) -> None:
    """Archive (signed JSONL) and delete events older than the retention period."""

    async def work(db: Database, current: Settings) -> list[str]:
        paths = await archive.archive_expired(db, current, KeyringCheckpointSigner())
        return [str(path) for path in paths]

    files = _with_keyring(work)
    if as_json:
        emit_json({"files": files})
    else:
        typer.echo(f"{len(files)} archive file(s) written", err=True)
        for name in files:
            typer.echo(name)


@app.command("verify-archive")
def verify_archive_file(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: bool = typer.Option(False, "--json"),
    public_keys: Annotated[
        Path | None,
        typer.Option("--public-keys", exists=True, dir_okay=False, help=PUBLIC_KEYS_HELP),
    ] = None,
) -> None:
    """Verify an archive file on its own (signature and chain); exit 1 if it does not.

    With ``--public-keys`` nothing but the file and the keys is needed: no database, no secret.
    """
    if public_keys:
        report = archive.verify_archive(path, _public_keys(public_keys))
    else:

        async def work(_db: Database, _settings: Settings) -> archive.ArchiveReport:
            return archive.verify_archive(path, KeyringCheckpointSigner())

        report = _with_keyring(work)
    if as_json:
        emit_json(report.__dict__)
    elif report.ok:
        typer.echo(
            f"archive OK: events {report.first_sequence}..{report.last_sequence} ({report.count})"
        )
    else:
        typer.echo(f"archive INVALID: {report.problem}", err=True)
    if not report.ok:
        sys.exit(1)
