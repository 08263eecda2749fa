"""``aayu-accounts clients create|rotate|list|disable``: service clients of the signed API.

A secret is printed once (``create``, ``rotate``) and never again: the database keeps it only
encrypted. ``--json`` prints one JSON value on stdout and nothing else there.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from aayu_accounts.api_security.service_client import changes as client_changes
from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.api_security.service_client.schemas import ClientView, IssuedSecret
from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.audit.service import Actor
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.errors import AppError

app = typer.Typer(
    help="Service clients that sign requests to /api/v1/service.", no_args_is_help=True
)

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only")]


def _operator() -> Actor:
    try:
        name = getpass.getuser()
    except OSError:
        name = "unknown"
    return Actor.system(f"cli:{name}")


def _run(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` in one committed unit with the keyring loaded (secrets are encrypted);
    an expected failure exits 1 with its one-line reason."""
    current = settings()

    async def runner(db: Database) -> T:
        runtime = await start_keyring(current, db, refresh=False)
        try:
            result = await work(db)
            await client_changes.drain()  # rotate, disable: tell the running instances
            return result
        finally:
            await runtime.stop()

    try:
        return run_with_db(runner)
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)


def _print_secret(issued: IssuedSecret, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json({"key_id": issued.key_id, "secret": issued.secret})
        return
    typer.echo(f"{verb}. Store the secret now: it is shown only this once.")
    typer.echo(f"key id: {issued.key_id}")
    typer.echo(f"secret: {issued.secret}")


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A name for the client, e.g. scribe-backend")],
    rate_limit: Annotated[
        int | None, typer.Option("--rate-limit", min=1, help="Requests per second (default 100)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a client; prints its key id and 256-bit secret once."""

    async def work(db: Database) -> IssuedSecret:
        async with db.session_scope() as session:
            return await client_service.create_client(
                session, name=name, actor=_operator(), rate_limit_per_second=rate_limit
            )

    _print_secret(_run(work), as_json, f"Created service client {name!r}")


@app.command()
def rotate(
    name: Annotated[str, typer.Argument(help="The client's name")],
    grace_seconds: Annotated[
        int | None,
        typer.Option(
            "--grace-seconds",
            min=0,
            help="How long the old secret keeps working (default AAYU_CLIENT_SECRET_GRACE_SECONDS)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new secret; the old one keeps verifying for the grace period, then stops."""
    grace = (
        grace_seconds
        if grace_seconds is not None
        else ApiSecuritySettings().client_secret_grace_seconds
    )

    async def work(db: Database) -> IssuedSecret:
        async with db.session_scope() as session:
            return await client_service.rotate_client(
                session, name=name, actor=_operator(), grace_seconds=grace
            )

    _print_secret(_run(work), as_json, f"Rotated {name!r}; the old secret works {grace} s more")


@app.command("list")
def list_clients(as_json: JsonOption = False) -> None:
    """Every client with its key id, limit, state and number of live secrets (no secrets)."""

    async def work(db: Database) -> list[ClientView]:
        async with db.session_scope(write=False) as session:
            return await client_service.list_clients(session)

    views = _run(work)
    if as_json:
        emit_json([view.model_dump(mode="json") for view in views])
        return
    for view in views:
        state = "disabled" if view.disabled_at else "active"
        limit = f"{view.rate_limit_per_second}/s" if view.rate_limit_per_second else "default"
        typer.echo(
            f"{view.key_id}  {state:<8}  {limit:<8}  secrets={view.live_secrets}  {view.name}"
        )


@app.command()
def disable(name: Annotated[str, typer.Argument(help="The client's name")]) -> None:
    """Stop accepting the client's signatures (every running instance as soon as it commits)."""

    async def work(db: Database) -> ClientView:
        async with db.session_scope() as session:
            return await client_service.disable_client(session, name=name, actor=_operator())

    view = _run(work)
    typer.echo(f"Disabled service client {view.name!r} ({view.key_id}).")
