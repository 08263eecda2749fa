"""``aayu-accounts migrate legacy-users [FILE]``: v2.5 users into the identity store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.cli.flags_cli import fail, operator
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.rollout.legacy.credentials import LegacyCredentialsInvalid
from aayu_accounts.rollout.legacy_migration.service import migrate_legacy_users, read_entries

app = typer.Typer(help="Data migrations.", no_args_is_help=True)


@app.command("legacy-users")
def legacy_users(
    file: Annotated[
        Path | None, typer.Argument(help="Credential file (default: AAYU_LEGACY_AUTH_FILE)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Import v2.5 users (Argon2id hashes); safe to re-run, resumes where it stopped."""
    current = settings()
    source = file or current.legacy_auth_file
    if source is None:
        fail("no credential file: give FILE or set AAYU_LEGACY_AUTH_FILE")
        return
    try:
        entries = read_entries(source)
    except FileNotFoundError:
        fail(f"{source} does not exist")
        return
    except LegacyCredentialsInvalid as exc:
        fail(str(exc))
        return

    async def work(db: Database) -> dict[str, Any]:
        keyring = await start_keyring(current, db, refresh=False)
        hasher = PasswordHasher.from_settings(current)
        try:
            with Progress(
                TextColumn("migrating v2.5 users"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=as_json,
                disable=as_json,
            ) as bar:
                task = bar.add_task("users", total=len(entries))
                report = await migrate_legacy_users(
                    db,
                    hasher,
                    entries,
                    actor=operator(),
                    progress=lambda _outcome: bar.advance(task),
                )
        finally:
            await keyring.stop()
        return report.as_dict()

    result = run_with_db(work)
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"beta users migrated: {result['migrated_share']:.0%} of {result['total']} "
        f"(new {result['migrated']}, already {result['already']}, "
        f"no email {result['skipped_no_email']}, conflicts {result['conflict']}, "
        f"failed {result['failed']})"
    )
