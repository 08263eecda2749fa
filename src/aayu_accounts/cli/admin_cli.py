"""``aayu-accounts admin create --email E [--password-stdin]``: a platform administrator.

Passwords are never arguments (they would sit in shell history and ``ps``): one line from
standard input with ``--password-stdin``, otherwise a hidden prompt asked twice.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from aayu_accounts.audit.service import Actor
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.errors import AppError
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import service as user_service

app = typer.Typer(help="Platform administrators.", no_args_is_help=True)


def _operator() -> Actor:
    try:
        name = getpass.getuser()
    except OSError:
        name = "unknown"
    return Actor.system(f"cli:{name}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise typer.BadParameter("no password on standard input", param_hint="--password-stdin")
        return password
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat password", hide_input=True)
    if first != second:
        raise typer.BadParameter("the two passwords differ")
    return str(first)


@app.command()
def create(
    email: Annotated[str, typer.Option("--email", help="The administrator's email address")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    full_name: Annotated[
        str, typer.Option("--full-name", help="Display name")
    ] = "Platform Administrator",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only")] = False,
) -> None:
    """Create a platform administrator (verified; no clinic membership)."""
    password = _read_password(password_stdin)
    current = settings()

    async def work(db: Database) -> str:
        keys = await start_keyring(current, db, refresh=False)
        hasher = PasswordHasher.from_settings(current)
        try:
            async with db.session_scope() as session:
                user = await user_service.create_verified_user(
                    session,
                    settings=current,
                    hasher=hasher,
                    policy=PasswordPolicy.from_settings(current),
                    email=email,
                    password=password,
                    full_name=full_name,
                    platform_admin=True,
                    actor=_operator(),
                )
                return user.id
        finally:
            hasher.close()
            await keys.stop()

    try:
        user_id = run_with_db(work)
    except AppError as exc:
        reasons = exc.extra.get("reasons")
        detail = " ".join(r["message"] for r in reasons) if reasons else exc.detail
        typer.echo(f"error: {detail}", err=True)
        sys.exit(1)
    if as_json:
        emit_json({"user_id": user_id, "email": email, "platform_admin": True})
    else:
        typer.echo(f"platform administrator created: {user_id}")
