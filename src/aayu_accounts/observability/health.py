"""Liveness (``/health``) and readiness (``/ready``), as API.md specifies."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aayu_accounts import migrate
from aayu_accounts.db import get_database

router = APIRouter(tags=["operations"])

ReadinessCheck = Any  # async callable (Request) -> dict with "ok" and detail


@router.get("/health", summary="Liveness: the process serves (no dependency is checked)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: the database answers and migrations are current",
    responses={503: {"description": "Not ready; the body says which check failed"}},
)
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {}
    db = get_database(request)
    try:
        async with asyncio.timeout(3):
            await db.ping()
            current = await migrate.current_revision(db.bind)
        head = migrate.head_revision()
        checks["database"] = {"ok": True}
        checks["migrations"] = {"ok": current == head, "current": current, "head": head}
    except Exception as exc:  # any failure means "not ready"; the type says which
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["migrations"] = {"ok": False}
    for name, check in getattr(request.app.state, "readiness_checks", {}).items():
        checks[name] = await check(request)
    ok = all(c.get("ok") for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks},
        status_code=200 if ok else 503,
    )
