"""``POST /api/v1/admin/rollback`` and ``GET /api/v1/admin/incidents`` (API.md)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import ReadSession, WriteSession
from aayu_accounts.identity.deps import PLATFORM_ADMIN_RESPONSES, PlatformAdmin
from aayu_accounts.rollout.incident import service
from aayu_accounts.rollout.incident.schemas import IncidentView, RollbackRequest, RollbackResult

router = APIRouter(prefix="/api/v1/admin", tags=["operations"], responses=PLATFORM_ADMIN_RESPONSES)


@router.post(
    "/rollback",
    summary="Turn NEW_AUTH, NEW_DATABASE and BILLING off everywhere; FALLBACK on",
)
async def rollback(
    session: WriteSession, admin: PlatformAdmin, body: RollbackRequest | None = None
) -> RollbackResult:
    started = time.perf_counter()
    incident, version = await service.rollback(
        session,
        actor=Actor.user(admin.user_id),
        kind="manual",
        reason=(body or RollbackRequest()).reason,
    )
    return RollbackResult(
        incident_id=incident.id,
        config_version=version,
        flags=incident.flags_after,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@router.get("/incidents", summary="Automatic and manual rollbacks with their reports")
async def list_incidents(
    session: ReadSession,
    _admin: PlatformAdmin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[IncidentView]:
    return await service.list_incidents(session, limit=limit)
