"""``aayu-accounts flags list|set|plan``: the operator's view of the rollout flags."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Annotated

import typer

from aayu_accounts.audit.service import Actor
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.db import Database
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.errors import FlagNotFound
from aayu_accounts.rollout.flag.plan import strategy_plan
from aayu_accounts.rollout.flag.schemas import FlagUpdate, FlagView
from aayu_accounts.rollout.settings import RolloutSettings

app = typer.Typer(help="Feature flags of the safe rollout.", no_args_is_help=True)


def operator() -> Actor:
    """The person at the shell, as the audit trail records them."""
    try:
        name = getpass.getuser()
    except OSError:
        name = "unknown"
    return Actor.system(f"cli:{name}")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def _row(flag: FlagView) -> str:
    state = "on " if flag.enabled else "off"
    extras = []
    if flag.allow.user_ids or flag.allow.org_ids:
        extras.append(f"allow={len(flag.allow.user_ids)}u/{len(flag.allow.org_ids)}o")
    if flag.deny.user_ids or flag.deny.org_ids:
        extras.append(f"deny={len(flag.deny.user_ids)}u/{len(flag.deny.org_ids)}o")
    if flag.requires:
        extras.append("requires=" + ",".join(flag.requires))
    pending = [s for s in flag.schedule if s.applied_at is None]
    if pending:
        extras.append(f"next step {pending[0].run_at.isoformat()}")
    return f"{flag.key:<16} {state} {flag.rollout_percent:>3} %  {' '.join(extras)}".rstrip()


@app.command("list")
def list_flags(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Show every flag: on/off, rollout percentage, lists, dependencies, next step."""

    async def work(db: Database) -> list[FlagView]:
        async with db.session_scope(write=False) as session:
            return await flag_service.list_flags(session)

    flags = run_with_db(work)
    if as_json:
        emit_json([f.model_dump(mode="json") for f in flags])
        return
    for flag in flags:
        typer.echo(_row(flag))


async def _change(db: Database, key: str, change: FlagUpdate, *, create: bool) -> FlagView:
    current = settings()
    channel = fanout.redis_channel(current.redis_prefix, RolloutSettings().flag_channel)
    # Session innermost: it commits first, then the publisher flushes the announcement.
    async with fanout.redis_publishing(current, channel), db.session_scope() as session:
        return await flag_service.update_flag(
            session, key, change, actor=operator(), create_missing=create
        )


@app.command("set")
def set_flag(
    key: Annotated[str, typer.Argument(help="Flag key, e.g. NEW_AUTH")],
    on: Annotated[bool | None, typer.Option("--on/--off", help="Turn the flag on or off")] = None,
    percent: Annotated[
        int | None, typer.Option("--percent", min=0, max=100, help="Rollout percentage")
    ] = None,
    create: Annotated[bool, typer.Option("--create", help="Create the flag if absent")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Change a flag; every instance applies it within a second. The change is audited."""
    if on is None and percent is None:
        fail("nothing to change: give --on, --off or --percent")
    change = FlagUpdate(enabled=on, rollout_percent=percent)

    async def work(db: Database) -> FlagView:
        return await _change(db, key, change, create=create)

    try:
        flag = run_with_db(work)
    except FlagNotFound:
        fail(f"there is no flag {key} (use --create to add one)")
        raise
    if as_json:
        emit_json(flag.model_dump(mode="json"))
    else:
        typer.echo(_row(flag))


@app.command("plan")
def plan(
    day_zero: Annotated[
        datetime, typer.Option("--day-zero", help="Start of day 0 of the plan (UTC)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Schedule the strategy's rollout: day 15 10 %, day 17 25 %, day 19 50 %, day 21 100 %."""
    from datetime import UTC  # noqa: PLC0415 - only this command needs it

    start = day_zero if day_zero.tzinfo else day_zero.replace(tzinfo=UTC)
    steps = strategy_plan(start)

    async def work(db: Database) -> list[FlagView]:
        return [
            await _change(db, key, FlagUpdate(schedule=key_steps), create=False)
            for key, key_steps in steps.items()
        ]

    flags = run_with_db(work)
    if as_json:
        emit_json([f.model_dump(mode="json") for f in flags])
        return
    for flag in flags:
        for step in flag.schedule:
            if step.applied_at is None:
                typer.echo(f"{flag.key:<16} {step.run_at.isoformat()} -> {step.rollout_percent} %")
