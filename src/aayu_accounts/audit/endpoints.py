"""The audit API: a clinic's events (owner, admin, auditor), their export (owner, auditor), and
the platform administrators' cross-clinic view.

Thin on purpose: the identity dependencies establish who is asking and their membership (a
non-member gets 404, never 403); the service applies the org scope, the limits and the audit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.schemas import AuditEventPage, ExportFormat
from aayu_accounts.audit.service import (
    Actor,
    EventQuery,
    list_org_events,
    list_platform_events,
    start_export,
    stream_export,
)
from aayu_accounts.config import Settings
from aayu_accounts.db import ReadSession, WriteSession, get_database
from aayu_accounts.identity.deps import PLATFORM_ADMIN_RESPONSES, PlatformAdmin, org_access
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.permissions import Permission
from aayu_accounts.kit import clock

router = APIRouter(tags=["audit"])

CanRead = Annotated[OrgAccess, Depends(org_access(Permission.AUDIT_READ))]
CanExport = Annotated[OrgAccess, Depends(org_access(Permission.AUDIT_EXPORT))]
ActionFilter = Annotated[AuditAction | None, Query(description="area:subject:verb")]
ActorFilter = Annotated[str | None, Query(max_length=100)]
Since = Annotated[datetime | None, Query(description="RFC 3339, inclusive")]
Until = Annotated[datetime | None, Query(description="RFC 3339, exclusive")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]
Limit = Annotated[int, Query(ge=1, le=200)]
OutcomeFilter = Annotated[
    Literal["success", "failure", "denied", "error"] | None, Query(description="the outcome")
]

MEDIA_TYPES = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv"}


def _utc(moment: datetime | None) -> datetime | None:
    # A time without an offset is read as UTC, the API's only zone.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _query(
    action: AuditAction | None,
    actor_id: str | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None = None,
) -> EventQuery:
    return EventQuery(
        action=action, actor_id=actor_id, since=_utc(since), until=_utc(until), outcome=outcome
    )


@router.get(
    "/api/v1/orgs/{org_id}/audit-events",
    summary="A clinic's audit events, newest first, with filters and cursor pagination",
)
async def list_audit_events(  # noqa: PLR0917 - FastAPI maps each query parameter to one
    org_id: str,
    session: ReadSession,
    access: CanRead,
    action: ActionFilter = None,
    actor_id: ActorFilter = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    outcome: OutcomeFilter = None,
) -> AuditEventPage:
    return await list_org_events(
        session,
        access.org_id,
        _query(action, actor_id, since, until, outcome),
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/api/v1/orgs/{org_id}/audit-events/export",
    summary="Export a clinic's audit events as JSONL or CSV (audited, limited per user per day)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        429: {"description": "Daily export limit reached (code export_limit_reached)"},
    },
)
async def export_audit_events(  # noqa: PLR0917 - FastAPI maps each query parameter to one
    org_id: str,
    request: Request,
    session: WriteSession,
    access: CanExport,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSONL,
    action: ActionFilter = None,
    actor_id: ActorFilter = None,
    since: Since = None,
    until: Until = None,
    outcome: OutcomeFilter = None,
) -> StreamingResponse:
    settings: Settings = request.app.state.settings
    ticket = await start_export(
        session,
        actor=Actor.user(access.user_id),
        org_id=access.org_id,
        query=_query(action, actor_id, since, until, outcome),
        export_format=export_format,
        exports_per_day=settings.audit_exports_per_day,
    )
    # The write session commits after this returns and before the body streams (db.py), so
    # the export's own event is durable before a single line leaves.
    name = f"audit-{access.org_id}-{clock.now():%Y%m%dT%H%M%SZ}.{export_format.value}"
    return StreamingResponse(
        stream_export(get_database(request), ticket),
        media_type=MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/api/v1/admin/audit-events",
    tags=["operations"],
    summary="Audit events across every clinic (platform administrators)",
    responses=PLATFORM_ADMIN_RESPONSES,
)
async def list_platform_audit_events(  # noqa: PLR0917 - FastAPI maps each query parameter
    session: ReadSession,
    _admin: PlatformAdmin,
    org_id: Annotated[str | None, Query(max_length=36)] = None,
    action: ActionFilter = None,
    actor_id: ActorFilter = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    outcome: OutcomeFilter = None,
) -> AuditEventPage:
    return await list_platform_events(
        session,
        _query(action, actor_id, since, until, outcome),
        org_id=org_id,
        cursor=cursor,
        limit=limit,
    )
