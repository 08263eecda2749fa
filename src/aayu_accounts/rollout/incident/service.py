"""Rollback (manual or automatic) and the incident report it leaves.

A rollback is one transaction: new-path flags off, FALLBACK on, pending schedule voided, the
incident row and the audit events. The report file is written after commit by a job (and
directly by the CLI, which may run where no worker does); writing it is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.jobs import enqueue, job_handler
from aayu_accounts.kit import clock
from aayu_accounts.models.incident import Incident
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.incident import repository
from aayu_accounts.rollout.incident.schemas import IncidentView
from aayu_accounts.rollout.settings import RolloutSettings

WRITE_REPORT_JOB = "rollout.incident.write_report"


def actor_label(actor: Actor) -> str:
    return f"{actor.kind}:{actor.id}" if actor.id else actor.kind


async def rollback(
    session: AsyncSession,
    *,
    actor: Actor,
    kind: Literal["manual", "automatic"],
    reason: str,
    measurements: dict[str, Any] | None = None,
    timeline: list[dict[str, Any]] | None = None,
) -> tuple[Incident, int]:
    """Roll the new path back and record the incident; returns it and the config version.

    Never commits. Safe to repeat: a second rollback finds the flags already off and still
    records who asked and when.
    """
    started = time.perf_counter()
    events = list(timeline or [])
    before = await flag_service.flag_states(session)
    events.append({"at": clock.now().isoformat(), "event": "rollback started", "by": kind})
    version, voided = await flag_service.apply_rollback(session, actor=actor)
    after = await flag_service.flag_states(session)
    events.append(
        {
            "at": clock.now().isoformat(),
            "event": "flags switched",
            "config_version": version,
            "schedule_steps_voided": voided,
        }
    )
    incident = Incident(
        kind=kind,
        severity="critical",
        actor=actor_label(actor)[:200],
        reason=reason[:2000],
        flags_before=before,
        flags_after=after,
        metrics=measurements or {},
        timeline=events,
        created_at=clock.now(),
    )
    session.add(incident)
    await session.flush()
    await record(
        session,
        AuditAction.ROLLBACK_EXECUTED,
        actor=actor,
        target_type="incident",
        target_id=incident.id,
        details={
            "kind": kind,
            "config_version": version,
            "old": before,
            "new": after,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    await record(
        session,
        AuditAction.INCIDENT_CREATED,
        actor=actor,
        target_type="incident",
        target_id=incident.id,
        details={"kind": kind, "severity": incident.severity},
    )
    await enqueue(session, WRITE_REPORT_JOB, {"incident_id": incident.id})
    metrics.ROLLBACKS.labels(kind).inc()
    return incident, version


def view(incident: Incident) -> IncidentView:
    return IncidentView(
        id=incident.id,
        kind=incident.kind,
        severity=incident.severity,
        actor=incident.actor,
        reason=incident.reason,
        created_at=incident.created_at,
        flags_before=incident.flags_before,
        flags_after=incident.flags_after,
        metrics=incident.metrics,
        timeline=incident.timeline,
        report_path=incident.report_path,
    )


async def list_incidents(session: AsyncSession, *, limit: int = 50) -> list[IncidentView]:
    return [view(i) for i in await repository.latest(session, limit)]


async def get_incident(session: AsyncSession, incident_id: str) -> IncidentView | None:
    incident = await repository.get(session, incident_id)
    return view(incident) if incident is not None else None


def render_report(incident: IncidentView) -> str:
    """The report as a Markdown file: what happened, flags before and after, metrics."""
    lines = [
        f"# Incident {incident.id}: {incident.kind} rollback",
        "",
        f"- when: {incident.created_at.isoformat()}",
        f"- severity: {incident.severity}",
        f"- by: {incident.actor}",
        f"- reason: {incident.reason}",
        "",
        "## Flags",
        "",
        "| flag | before | after |",
        "|---|---|---|",
    ]
    lines.extend(
        f"| {key} | {_flag_cell(incident.flags_before.get(key))} "
        f"| {_flag_cell(incident.flags_after.get(key))} |"
        for key in sorted(set(incident.flags_before) | set(incident.flags_after))
    )
    lines += ["", "## Timeline", ""]
    lines += [f"- {e.get('at', '?')}: {e.get('event', '')}" for e in incident.timeline]
    lines += [
        "",
        "## Metrics at the time",
        "",
        "```json",
        json.dumps(incident.metrics, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _flag_cell(state: dict[str, Any] | None) -> str:
    if state is None:
        return "-"
    return f"{'on' if state.get('enabled') else 'off'} {state.get('rollout_percent', 0)} %"


async def write_report_file(session: AsyncSession, incident_id: str, directory: Path) -> Path:
    """Write (or rewrite) the incident's report file atomically; records its path."""
    incident = await repository.get(session, incident_id)
    if incident is None:
        raise LookupError("incident not found")
    stamp = incident.created_at.strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"incident-{stamp}-{incident.id}.md"
    await asyncio.to_thread(_write_atomically, path, render_report(view(incident)))
    incident.report_path = str(path)
    await session.flush()
    return path


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(content, encoding="utf-8")
    os.replace(temporary, path)


@job_handler(WRITE_REPORT_JOB)
async def _write_report_job(session: AsyncSession, payload: dict[str, Any]) -> None:
    await write_report_file(session, str(payload["incident_id"]), RolloutSettings().incident_dir)
