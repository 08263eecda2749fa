"""``aayu-accounts db upgrade|downgrade|current``."""

from __future__ import annotations

import typer

from aayu_accounts import migrate
from aayu_accounts.cli.common import emit_json, run_with_db
from aayu_accounts.db import Database

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""

    async def work(db: Database) -> str | None:
        await migrate.upgrade(db.engine, revision)
        return await migrate.current_revision(db.engine)

    current = run_with_db(work)
    typer.echo(f"database at revision {current}", err=True)


@app.command()
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'")) -> None:
    """Revert migrations down to REVISION."""

    async def work(db: Database) -> str | None:
        await migrate.downgrade(db.engine, revision)
        return await migrate.current_revision(db.engine)

    current = run_with_db(work)
    typer.echo(f"database at revision {current or 'base'}", err=True)


@app.command()
def current(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """Show the database's revision and the newest one available."""

    async def work(db: Database) -> str | None:
        return await migrate.current_revision(db.engine)

    revision = run_with_db(work)
    head = migrate.head_revision()
    if as_json:
        emit_json({"current": revision, "head": head, "up_to_date": revision == head})
    else:
        typer.echo(f"current {revision or 'base'}; head {head}")
