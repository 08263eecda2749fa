"""Liveness (``/health``), readiness (``/ready``) and the periodic health checks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from aayu_accounts import migrate
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, get_database
from aayu_accounts.kit import clock, redis_client, resilience
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)

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


# --- periodic health checks (every process) ---------------------------------------------


class HealthMonitor:
    """The strategy's periodic checks: the database every 30 s, Redis more often.

    Each check goes through its dependency's breaker: a failure counts towards opening it
    (and so towards the outage alert), and once the breaker's reset time has passed the check
    is the trial that closes it again — recovery needs no traffic and no operator. Runs in
    every process (not only the leader): each process must know whether *its* database
    connection works, since that is what decides whether its requests fail fast.
    """

    def __init__(self, db: Database, settings: Settings, redis: Redis | None = None) -> None:
        self.db = db
        self.settings = settings
        self.redis = redis

    async def check_database(self) -> bool:
        database = resilience.dependency(resilience.DATABASE)
        timeout = self.settings.db_connect_timeout_seconds + 1
        try:
            if self.db.dialect == "sqlite":
                # Embedded mode: a local file has no breaker (see wiring.start).
                async with asyncio.timeout(timeout):
                    await self.db.ping()
            else:
                await database.breaker_call(self.db.ping, attempt_timeout=timeout)
        except Exception as exc:  # any failure means "down"; the type says which
            metrics.DB_UP.set(0)
            log.warning("health.database_down", error=type(exc).__name__)
            return False
        metrics.DB_UP.set(1)
        return True

    async def check_redis(self) -> bool | None:
        if self.redis is None:
            return None
        up = await redis_client.ping(self.redis)
        metrics.REDIS_UP.set(1 if up else 0)
        return up

    async def run_forever(self, stop: asyncio.Event) -> None:
        next_db = next_redis = 0.0
        while not stop.is_set():
            now = clock.monotonic()
            if now >= next_db:
                await self.check_database()
                next_db = now + self.settings.db_health_check_seconds
            if self.redis is not None and now >= next_redis:
                await self.check_redis()
                next_redis = now + self.settings.redis_health_check_seconds
            wake = min(next_db, next_redis if self.redis is not None else next_db)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, wake - clock.monotonic())):
                    await stop.wait()


def pool_usage(db: Database) -> dict[str, int]:
    """Connections of the pool by state (QueuePool; other pools report nothing)."""
    pool = db.engine.pool
    usage: dict[str, int] = {}
    for state, method in (
        ("checked_out", "checkedout"),
        ("idle", "checkedin"),
        ("overflow", "overflow"),
        ("size", "size"),
    ):
        counter = getattr(pool, method, None)
        if callable(counter):
            usage[state] = max(0, int(counter()))
    return usage


async def dependencies_ready(_request: Request) -> dict[str, Any]:
    """Readiness detail: each breaker's state. Only an open database breaker fails it; the
    others degrade (limits in-process, emails queued) without taking the instance out."""
    states = {d.name: d.state for d in resilience.all_dependencies()}
    return {"ok": states.get(resilience.DATABASE) != "open", "breakers": states}
