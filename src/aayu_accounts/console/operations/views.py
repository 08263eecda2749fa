"""Operations pages for platform administrators who signed in with MFA.

* ``/operations``: the strategy's success criteria at a glance, the auto-rollback status, the
  kill switch, firing alerts, recent incidents, charts, and every flag with its rollout
  slider (htmx posts one flag and swaps its card; without JavaScript the form posts and the
  page reloads), allow/deny lists and scheduled steps.
* ``/operations/rollback``: the kill switch's confirmation step (a page, so it works without
  JavaScript), then the same rollback service as ``POST /api/v1/admin/rollback``.
* ``/operations/incidents`` and ``/operations/incidents/{id}``: incidents with their reports.

Every change goes through the rollout services, which audit it and fan it out to every
instance; what the page reads comes from the services and the stores that already exist
(see ``signals.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, activity
from aayu_accounts.billing.revenue.service import RevenueReport, build_report
from aayu_accounts.console.charts import bar_chart, goal_chart, line_chart, percent
from aayu_accounts.console.forms import FormError
from aayu_accounts.console.operations import signals
from aayu_accounts.console.page import (
    PlatformAdminPage,
    attempt,
    read,
    read_form,
    redirect,
    render,
)
from aayu_accounts.errors import AppError, NotFound, ValidationFailed
from aayu_accounts.kit import clock
from aayu_accounts.observability.alert import evaluator as alert_evaluator
from aayu_accounts.observability.alert.service import recent_alerts
from aayu_accounts.rollout.auto_rollback.monitor import Thresholds
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.runtime import FlagRuntime
from aayu_accounts.rollout.flag.schemas import FlagUpdate, FlagView, ScheduleStepIn, TargetList
from aayu_accounts.rollout.incident import service as incident_service
from aayu_accounts.rollout.incident.schemas import IncidentView
from aayu_accounts.rollout.legacy_migration.service import migrated_share
from aayu_accounts.rollout.wiring import RuntimeOutcomes

router = APIRouter()

KEY_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"


@dataclass(frozen=True)
class AlertRow:
    key: str
    severity: str
    status: str
    summary: str
    runbook: str
    fired_at: datetime
    last_raised_at: datetime
    resolved_at: datetime | None


def _runtime(request: Request) -> FlagRuntime:
    runtime: FlagRuntime = request.app.state.flag_runtime
    return runtime


def _money(cents: int) -> str:
    return f"${cents / 100:,.0f}"


def _time_label(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=clock.now().tzinfo).strftime("%H:%M")


def _seconds(value: float) -> str:
    return f"{value:g} s"


async def _migration(request: Request, session: AsyncSession) -> tuple[float | None, int]:
    """Share of the v2.5 users found in the new store (the legacy file's users)."""
    context = getattr(request.app.state, "rollout", None)
    if context is None:
        return None, 0
    users = context.legacy_credentials.users()
    if not users:
        return None, 0
    return await migrated_share(session, users), len(users)


@dataclass
class Overview:
    flags: list[FlagView]
    incidents: list[IncidentView]
    alerts: list[AlertRow]
    revenue: RevenueReport
    migrated: float | None
    legacy_users: int
    sign_ins: list[int]


async def _overview(request: Request) -> Overview:
    since, until = signals.hours_back(24)

    async def work(session: AsyncSession) -> Overview:
        alerts = [
            AlertRow(
                a.key,
                a.severity,
                a.status,
                a.summary,
                a.runbook,
                a.fired_at,
                a.last_raised_at,
                a.resolved_at,
            )
            for a in await recent_alerts(session, limit=20)
        ]
        migrated, legacy_users = await _migration(request, session)
        return Overview(
            flags=await flag_service.list_flags(session),
            incidents=await incident_service.list_incidents(session, limit=10),
            alerts=alerts,
            revenue=await build_report(session),
            migrated=migrated,
            legacy_users=legacy_users,
            sign_ins=await activity(
                session, AuditAction.LOGIN_SUCCEEDED, since=since, until=until, buckets=24
            ),
        )

    return await read(request, work)


def _charts(request: Request, overview: Overview) -> dict[str, Any]:
    runtime = _runtime(request)
    new_path = signals.new_path_series(runtime.outcomes)
    evaluator = alert_evaluator.latest()
    history = signals.history_series(list(evaluator.history) if evaluator else [])
    since, _until = signals.hours_back(24)
    hours = [
        (datetime.fromtimestamp(since.timestamp() + 3600 * i, tz=since.tzinfo).strftime("%H"), n)
        for i, n in enumerate(overview.sign_ins)
    ]
    rollout = runtime.rollout
    return {
        "new_path_errors": line_chart(
            new_path.error_rate,
            title="New path: error rate per minute (this instance, 10 min)",
            y_format=percent,
            x_format=_time_label,
            threshold=rollout.auto_rollback_max_error_rate,
            threshold_label=f"rollback at {rollout.auto_rollback_max_error_rate:.0%}",
        ),
        "new_path_latency": line_chart(
            new_path.p95_seconds,
            title="New path: p95 latency per minute (bucket bound, s)",
            y_format=_seconds,
            x_format=_time_label,
            threshold=rollout.auto_rollback_max_p95_seconds,
            threshold_label=f"rollback at {rollout.auto_rollback_max_p95_seconds:g} s",
        ),
        "http_errors": line_chart(
            [history.error_rate],
            title="HTTP 5xx share (alert evaluator samples, 2 h)",
            y_format=percent,
            x_format=_time_label,
            threshold=0.05,
            threshold_label="alert at 5 %",
        ),
        "http_latency": line_chart(
            [history.p95_seconds],
            title="HTTP p95 latency (alert evaluator samples, 2 h)",
            y_format=_seconds,
            x_format=_time_label,
        ),
        "shadow": line_chart(
            [history.shadow_success],
            title="Shadow-write success (alert evaluator samples, 2 h)",
            y_format=percent,
            x_format=_time_label,
            y_max=1.0,
        ),
        "sign_ins": bar_chart(hours, title="Sign-ins per hour (audit trail, UTC, 24 h)"),
        "history_samples": history.samples,
        "has_evaluator": evaluator is not None,
    }


async def _statuses(request: Request) -> list[signals.CapabilityStatus]:
    runtime = _runtime(request)
    rollout = runtime.rollout
    return await signals.capability_status(
        RuntimeOutcomes(runtime),
        Thresholds.from_settings(rollout),
        short_seconds=rollout.auto_rollback_short_window_seconds,
        long_seconds=rollout.auto_rollback_long_window_seconds,
    )


@router.get("/operations/verdicts")
async def verdicts(ctx: PlatformAdminPage, request: Request) -> Response:
    """Each capability's verdict now, as the monitor judges it. A fragment htmx loads into
    the overview after it (with Redis this reads every second of the long window from every
    instance: ~10^2 ms the overview need not wait for); a page of its own without htmx."""
    template = "_verdicts.html" if request.headers.get("hx-request") else "verdicts.html"
    return render(request, f"operations/{template}", {"statuses": await _statuses(request)})


def _criteria(overview: Overview) -> dict[str, Any]:
    totals = signals.process_totals(signals.current_snapshot())
    mrr = overview.revenue.mrr_cents.get("usd", 0)
    return {
        "mrr_cents": mrr,
        "mrr_goal_cents": signals.MRR_GOAL_CENTS,
        "mrr_chart": goal_chart(
            mrr / 100,
            signals.MRR_GOAL_CENTS / 100,
            title="MRR against the $5,000 goal",
            value_format=lambda v: f"${v:,.0f}",
        ),
        "other_currencies": {k: v for k, v in overview.revenue.mrr_cents.items() if k != "usd"},
        "migrated": overview.migrated,
        "legacy_users": overview.legacy_users,
        "totals": totals,
        "uptime": signals.duration_text(totals.uptime_seconds()),
    }


@router.get("/operations")
async def operations_page(ctx: PlatformAdminPage, request: Request) -> Response:
    overview = await _overview(request)
    last_automatic = next((i for i in overview.incidents if i.kind == "automatic"), None)
    return render(
        request,
        "operations/overview.html",
        {
            "o": overview,
            "rollout": _runtime(request).rollout,
            "last_automatic": last_automatic,
            "criteria": _criteria(overview),
            "charts": _charts(request, overview),
            "flag_errors": {},
            "production": request.app.state.settings.is_production,
        },
    )


# --- flags -------------------------------------------------------------------------------


def _ids(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def parse_schedule(text: str) -> list[ScheduleStepIn]:
    """One step per line: ``<RFC 3339 time> <percent>`` or ``<time> off``."""
    steps = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError(line)
            run_at = datetime.fromisoformat(parts[0])
            if parts[1].lower() == "off":
                steps.append(ScheduleStepIn(run_at=run_at, enabled=False))
            else:
                percent_value = int(parts[1].rstrip("%"))
                steps.append(
                    ScheduleStepIn(run_at=run_at, enabled=True, rollout_percent=percent_value)
                )
        except (ValueError, ValidationError):
            raise ValidationFailed(
                f"Schedule line {number}: write a time with its zone and a percent, "
                "e.g. 2026-12-01T09:00Z 25 (or 'off').",
                extra={"fields": ["schedule"]},
            ) from None
    return steps


def flag_update_from(form: dict[str, str]) -> FlagUpdate:
    """The flag form as the API's ``FlagUpdate`` (raises ``ValidationFailed``)."""
    try:
        percent_value = int(form.get("rollout_percent", "").strip() or "0")
    except ValueError:
        raise ValidationFailed(
            "The rollout must be a whole percent.", extra={"fields": ["rollout_percent"]}
        ) from None
    try:
        return FlagUpdate(
            enabled=form.get("enabled") == "on",
            rollout_percent=percent_value,
            allow=TargetList(
                user_ids=_ids(form.get("allow_users", "")),
                org_ids=_ids(form.get("allow_orgs", "")),
            ),
            deny=TargetList(
                user_ids=_ids(form.get("deny_users", "")),
                org_ids=_ids(form.get("deny_orgs", "")),
            ),
            schedule=parse_schedule(form.get("schedule", "")),
        )
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise ValidationFailed(
            f"Check these fields: {', '.join(fields)}.", extra={"fields": fields}
        ) from None


@router.post("/operations/flags/{key}")
async def save_flag(ctx: PlatformAdminPage, request: Request, key: str) -> Response:
    form = await read_form(request)
    if not _key_ok(key):
        raise NotFound()
    change: FlagUpdate | AppError
    try:
        change = flag_update_from(form)
    except AppError as invalid:
        change = invalid
    if not isinstance(change, AppError):
        checked = change

        async def work(session: AsyncSession) -> FlagView:
            return await flag_service.update_flag(
                session, key, checked, actor=Actor.user(ctx.user_id), create_missing=False
            )

        result = await attempt(request, work)
    else:
        result = change
    if request.headers.get("hx-request"):
        flag = result if isinstance(result, FlagView) else await _flag(request, key)
        return render(
            request,
            "operations/_flag.html",
            {
                "flag": flag,
                "error": FormError.of(result) if isinstance(result, AppError) else None,
                "saved": not isinstance(result, AppError),
            },
            status_code=result.status if isinstance(result, AppError) else 200,
        )
    if isinstance(result, AppError):
        overview = await _overview(request)
        return render(
            request,
            "operations/overview.html",
            {
                "o": overview,
                "rollout": _runtime(request).rollout,
                "last_automatic": None,
                "criteria": _criteria(overview),
                "charts": _charts(request, overview),
                "flag_errors": {key: FormError.of(result)},
                "production": request.app.state.settings.is_production,
            },
            status_code=result.status,
        )
    return redirect(request, f"/operations#flag-{key}", flash="flag_saved")


def _key_ok(key: str) -> bool:
    return re.fullmatch(KEY_PATTERN, key) is not None


async def _flag(request: Request, key: str) -> FlagView:
    async def work(session: AsyncSession) -> FlagView:
        return await flag_service.get_flag(session, key)

    return await read(request, work)


# --- the kill switch ------------------------------------------------------------------------


@router.get("/operations/rollback")
async def confirm_rollback(ctx: PlatformAdminPage, request: Request) -> Response:
    async def work(session: AsyncSession) -> dict[str, dict[str, Any]]:
        return await flag_service.flag_states(session)

    states = await read(request, work)
    return render(request, "operations/rollback.html", {"states": states, "error": None})


@router.post("/operations/rollback")
async def rollback(ctx: PlatformAdminPage, request: Request) -> Response:
    form = await read_form(request)
    reason = (form.get("reason") or "").strip()[:2000] or "manual rollback from the console"

    async def work(session: AsyncSession) -> str:
        incident, _version = await incident_service.rollback(
            session, actor=Actor.user(ctx.user_id), kind="manual", reason=reason
        )
        return incident.id

    result = await attempt(request, work)
    if isinstance(result, AppError):
        return render(
            request,
            "operations/rollback.html",
            {"states": {}, "error": FormError.of(result)},
            status_code=result.status,
        )
    return redirect(request, f"/operations/incidents/{result}", flash="rolled_back")


# --- incidents ----------------------------------------------------------------------------


@router.get("/operations/incidents")
async def incidents_page(ctx: PlatformAdminPage, request: Request) -> Response:
    async def work(session: AsyncSession) -> list[IncidentView]:
        return await incident_service.list_incidents(session, limit=100)

    return render(request, "operations/incidents.html", {"incidents": await read(request, work)})


@router.get("/operations/incidents/{incident_id}")
async def incident_page(ctx: PlatformAdminPage, request: Request, incident_id: str) -> Response:
    async def work(session: AsyncSession) -> IncidentView | None:
        return await incident_service.get_incident(session, incident_id)

    incident = await read(request, work) if len(incident_id) <= 64 else None
    if incident is None:
        raise NotFound()
    return render(
        request,
        "operations/incident.html",
        {"incident": incident, "report": incident_service.render_report(incident)},
    )
