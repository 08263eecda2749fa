"""``aayu-accounts backup create|restore`` and ``aayu-accounts cache purge``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.cli.flags_cli import fail
from aayu_accounts.db import Database
from aayu_accounts.rollout.backup import cache
from aayu_accounts.rollout.backup.service import (
    BackupFailed,
    Manifest,
    create_backup,
    restore_backup,
)

app = typer.Typer(help="Database backups (PostgreSQL custom format, SQLite online backup).")
cache_app = typer.Typer(help="Shared caches in Redis.")


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="Where to write the backup")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON")] = False,
) -> None:
    """Back the database up to FILE (and FILE.manifest.json), checked before reporting."""
    url = settings().database_url
    started = time.perf_counter()

    async def work(db: Database) -> Manifest:
        return await create_backup(db, url, file)

    try:
        manifest = run_with_db(work)
    except BackupFailed as exc:
        fail(str(exc))
        raise
    elapsed = time.perf_counter() - started
    if as_json:
        emit_json({**manifest.__dict__, "file": str(file), "seconds": round(elapsed, 3)})
    else:
        typer.echo(
            f"backup written to {file} ({manifest.size_bytes} bytes, schema "
            f"{manifest.schema_revision}, sha256 {manifest.sha256[:12]}) in {elapsed:.2f} s"
        )


@app.command("restore")
def restore(
    file: Annotated[Path, typer.Argument(help="A backup made by 'backup create'")],
    force: Annotated[
        bool, typer.Option("--force", help="Restore even over a newer database schema")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Restore FILE over the configured database (stop the servers first)."""
    url = settings().database_url
    started = time.perf_counter()

    async def work(db: Database) -> Manifest:
        return await restore_backup(db, url, file, force=force)

    try:
        manifest = run_with_db(work)
    except BackupFailed as exc:
        fail(str(exc))
        raise
    elapsed = time.perf_counter() - started
    if as_json:
        emit_json(
            {
                "file": str(file),
                "schema_revision": manifest.schema_revision,
                "seconds": round(elapsed, 3),
            }
        )
    else:
        typer.echo(f"restored {file} (schema {manifest.schema_revision}) in {elapsed:.2f} s")


@cache_app.command("purge")
def purge() -> None:
    """Delete this deployment's keys in Redis (caches, throttles, nonces rebuild themselves)."""
    current = settings()
    if not current.redis_url:
        typer.echo("no Redis configured: in-process caches end with their process")
        return
    removed = asyncio.run(cache.purge(current))
    typer.echo(f"purged {removed} keys under {current.redis_prefix!r}")
