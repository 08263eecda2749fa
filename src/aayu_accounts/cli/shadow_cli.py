"""``aayu-accounts shadow reconcile``: compare both document stores (no personal data shown)."""

from __future__ import annotations

from typing import Annotated

import typer

from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.db import Database
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.shadow.reconcile import ReconcileReport, reconcile

app = typer.Typer(help="Shadow writes: compare the legacy store and the database.")


@app.command("reconcile")
def reconcile_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with status 2 when the stores differ")
    ] = False,
) -> None:
    """Report documents that differ between the stores: keys, field names, hashed values."""
    store = LegacyDocumentStore(settings().legacy_store_dir)

    async def work(db: Database) -> ReconcileReport:
        async with db.session_scope(write=False) as session:
            return await reconcile(session, store)

    report = run_with_db(work)
    if as_json:
        emit_json(report.as_dict())
    else:
        typer.echo(
            f"{report.subjects} users, {report.documents} documents, "
            f"{len(report.divergences)} divergent"
        )
        for item in report.divergences:
            fields = ", ".join(
                f"{name} (legacy {sides['legacy']} / database {sides['database']})"
                for name, sides in item.fields.items()
            )
            typer.echo(f"  user#{item.subject} {item.key}: {item.kind} {fields}".rstrip())
    if check and not report.consistent:
        raise SystemExit(2)
