"""The clinic's audit trail: a filterable list (action, actor, time range, outcome), older pages
through the cursor (htmx appends them; a plain link without JavaScript), and the export.

Who: owner, admin and auditor read; owner and auditor export (the permission matrix). The list
comes from the audit service's org-scoped listing, the export from the same export service as
the API, which records the export and enforces the per-user daily limit. The export is a POST
with the CSRF field: a GET would let another site spend a user's exports with a link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.schemas import AuditEventPage, ExportFormat
from aayu_accounts.audit.service import (
    OUTCOMES,
    Actor,
    EventQuery,
    ExportTicket,
    list_org_events,
    start_export,
    stream_export,
)
from aayu_accounts.config import Settings
from aayu_accounts.console.forms import FormError
from aayu_accounts.console.page import (
    ConsoleContext,
    attempt,
    org_access,
    read,
    read_form,
    render,
    roles_page,
)
from aayu_accounts.db import get_database
from aayu_accounts.errors import AppError, ValidationFailed
from aayu_accounts.identity.permissions import Permission, allowed
from aayu_accounts.kit import clock

router = APIRouter()

AuditPage = Annotated[ConsoleContext, Depends(roles_page("owner", "admin", "auditor"))]
PAGE_SIZE = 50
FILTERS = ("action", "actor_id", "since", "until", "outcome")
MEDIA_TYPES = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv"}


@dataclass(frozen=True)
class Filters:
    """The filter form's values as typed (for the form and links) and as a query."""

    values: dict[str, str]
    query: EventQuery

    def link(self, **extra: str) -> str:
        params = {k: v for k, v in self.values.items() if v}
        params.update(extra)
        return urlencode(params)


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{name} must be a date (YYYY-MM-DD).", extra={"fields": [name]}
        ) from None


def filters_from(source: dict[str, str]) -> Filters:
    """Filters from the query string or a form. Dates are whole UTC days; 'until' includes
    its day. Raises ``ValidationFailed`` (422) for an unknown action/outcome or a bad date,
    and the service's ``InvalidTimeRange`` when 'from' is not before 'until'."""
    values = {name: (source.get(name) or "").strip()[:100] for name in FILTERS}
    action = None
    if values["action"]:
        try:
            action = AuditAction(values["action"])
        except ValueError:
            raise ValidationFailed("Unknown action.", extra={"fields": ["action"]}) from None
    if values["outcome"] and values["outcome"] not in OUTCOMES:
        raise ValidationFailed("Unknown outcome.", extra={"fields": ["outcome"]})
    since_day, until_day = _day(values["since"], "since"), _day(values["until"], "until")
    query = EventQuery(
        action=action,
        actor_id=values["actor_id"] or None,
        since=datetime.combine(since_day, time(), UTC) if since_day else None,
        until=datetime.combine(until_day + timedelta(days=1), time(), UTC) if until_day else None,
        outcome=values["outcome"] or None,
    )
    return Filters(values, query)


def _details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, indent=1, default=str) if details else ""


async def _page_of(
    request: Request, org_id: str, filters: Filters, cursor: str | None
) -> AuditEventPage:
    async def work(session: AsyncSession) -> AuditEventPage:
        return await list_org_events(session, org_id, filters.query, cursor=cursor, limit=PAGE_SIZE)

    return await read(request, work)


def _rows(request: Request, page: AuditEventPage, filters: Filters) -> Response:
    return render(
        request,
        "audit/_rows.html",
        {"page": page, "filters": filters, "details": _details},
    )


@router.get("/audit")
async def audit_page(ctx: AuditPage, request: Request) -> Response:
    access = await org_access(request, ctx, Permission.AUDIT_READ)
    error: FormError | None = None
    params = dict(request.query_params)
    try:
        filters = filters_from(params)
    except AppError as invalid:
        error, filters = FormError.of(invalid), filters_from({})
    cursor = params.get("cursor") or None
    page = await _page_of(request, access.org_id, filters, cursor)
    if request.headers.get("hx-request") and cursor:
        return _rows(request, page, filters)  # the next rows, appended by htmx
    return render(
        request,
        "audit/events.html",
        {
            "page": page,
            "filters": filters,
            "actions": [a.value for a in AuditAction],
            "outcomes": sorted(OUTCOMES),
            "can_export": allowed(access.role, Permission.AUDIT_EXPORT),
            "error": error,
            "details": _details,
            "older": bool(cursor),
        },
        status_code=error_status(error),
    )


def error_status(error: FormError | None) -> int:
    return 422 if error is not None else 200


@router.post("/audit/export")
async def export(ctx: AuditPage, request: Request) -> Response:
    access = await org_access(request, ctx, Permission.AUDIT_EXPORT)
    form = await read_form(request)
    settings: Settings = request.app.state.settings
    try:
        export_format = ExportFormat(form.get("format", "jsonl"))
        filters = filters_from(form)
    except ValueError:
        export_format, filters = ExportFormat.JSONL, filters_from({})
    except AppError as invalid:
        return await _with_error(request, access.org_id, invalid)

    async def work(session: AsyncSession) -> ExportTicket:
        return await start_export(
            session,
            actor=Actor.user(access.user_id),
            org_id=access.org_id,
            query=filters.query,
            export_format=export_format,
            exports_per_day=settings.audit_exports_per_day,
        )

    ticket = await attempt(request, work)  # committed (and audited) before the first line
    if isinstance(ticket, AppError):
        return await _with_error(request, access.org_id, ticket)
    name = f"audit-{access.org_id}-{clock.now():%Y%m%dT%H%M%SZ}.{export_format.value}"
    return StreamingResponse(
        stream_export(get_database(request), ticket),
        media_type=MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _with_error(request: Request, org_id: str, error: AppError) -> Response:
    filters = filters_from({})
    page = await _page_of(request, org_id, filters, None)
    return render(
        request,
        "audit/events.html",
        {
            "page": page,
            "filters": filters,
            "actions": [a.value for a in AuditAction],
            "outcomes": sorted(OUTCOMES),
            "can_export": True,
            "error": FormError.of(error),
            "details": _details,
            "older": False,
        },
        status_code=error.status,
    )
