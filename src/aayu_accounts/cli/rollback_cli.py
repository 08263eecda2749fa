"""``aayu-accounts rollback``: the new path off everywhere, FALLBACK on, an incident written."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.cli.flags_cli import operator
from aayu_accounts.db import Database
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.settings import RolloutSettings


def register(app: typer.Typer) -> None:
    app.command()(rollback)


def rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why (goes into the incident)")] = (
        "manual rollback from the command line"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Turn NEW_AUTH, NEW_DATABASE and BILLING off and FALLBACK on, on every instance."""
    current = settings()
    rollout = RolloutSettings()
    channel = fanout.redis_channel(current.redis_prefix, rollout.flag_channel)

    async def work(db: Database) -> dict[str, Any]:
        started = time.perf_counter()
        async with (
            fanout.redis_publishing(current, channel),
            db.session_scope() as session,
        ):
            incident, version = await incident_service.rollback(
                session, actor=operator(), kind="manual", reason=reason
            )
            incident_id, flags_after = incident.id, dict(incident.flags_after)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The server's worker writes the report too; doing it here means it exists even
        # when no server runs. Idempotent.
        async with db.session_scope() as session:
            path = await incident_service.write_report_file(
                session, incident_id, rollout.incident_dir
            )
        return {
            "incident_id": incident_id,
            "config_version": version,
            "flags": flags_after,
            "elapsed_ms": round(elapsed_ms, 1),
            "report": str(path),
        }

    result = run_with_db(work)
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"rolled back in {result['elapsed_ms']} ms (config version {result['config_version']}); "
        f"incident {result['incident_id']}, report {result['report']}"
    )
