"""Billing's part of the composition root: configuration, job handlers, the periodic tick,
plan seeding at start-up and the revenue metrics refresher."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing import runtime, tasks
from aayu_accounts.billing.entitlement.cache import (
    CHANNEL_SUFFIX,
    EntitlementCache,
    bind,
    bind_for_task,
)
from aayu_accounts.billing.entitlement.seats import ensure_seat_available
from aayu_accounts.billing.entitlement.service import invalidate_on_commit
from aayu_accounts.billing.plan.catalog import load_catalog
from aayu_accounts.billing.plan.service import seed_plans
from aayu_accounts.billing.revenue.service import metrics_refresher
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit.redis_client import create_redis

log = structlog.get_logger(__name__)

TICK_SECONDS = 60.0


async def seed_catalog(db: Database, settings: Settings) -> bool:
    """Write the plan catalog; False when the database refused (retried by the tick)."""
    try:
        async with db.session_scope() as session:
            await seed_plans(session, load_catalog(settings))
    except IntegrityError:
        # Another instance seeded the same plans at the same moment: theirs stand.
        log.info("billing.plans_seeded_elsewhere")
    except (SQLAlchemyError, OSError) as exc:
        # A database outage at start-up must not keep the process from serving /health.
        log.warning("billing.plan_seed_failed", error=type(exc).__name__)
        return False
    return True


def install(app: FastAPI, settings: Settings) -> None:
    runtime.configure(settings)
    seeded: list[bool] = [bool(getattr(app.state, "billing_plans_seeded", False))]

    async def tick(db: Database) -> None:
        if not seeded[0]:
            seeded[0] = await seed_catalog(db, settings)
        await tasks.tick(db)

    def register(scheduler: Any, _settings: Settings) -> None:
        scheduler.every(TICK_SECONDS, "billing.tick", tick)

    app.state.periodic_registrations.append(register)


async def start(app: FastAPI, settings: Settings) -> None:
    """Configure billing, seed the plan catalog (idempotent; retried by the tick when the
    database refuses), register the periodic tick (the scheduler starts after this) and
    export revenue metrics."""
    db: Database = app.state.db
    app.state.billing_plans_seeded = await seed_catalog(db, settings)
    install(app, settings)
    app.state.metrics_refreshers.append(metrics_refresher(db))
    # This instance's entitlement cache, told of other instances' changes over Redis. Bound
    # here for the background tasks started after this, and per request by the middleware.
    redis = create_redis(settings)
    entitlements = EntitlementCache(
        redis=redis, channel=f"{settings.redis_prefix}{CHANNEL_SUFFIX}" if redis else None
    )
    await entitlements.start()
    app.state.entitlement_cache = entitlements
    bind_for_task(entitlements)


async def stop(app: FastAPI) -> None:
    """Stop the entitlement cache's listener and close its Redis connection."""
    entitlements: EntitlementCache | None = getattr(app.state, "entitlement_cache", None)
    if entitlements is None:
        return
    await entitlements.stop()
    if entitlements.redis is not None:
        await entitlements.redis.aclose()


class EntitlementCacheMiddleware:
    """Binds the app instance's entitlement cache to each request (pure ASGI: no body
    buffering, nothing else touched). Outside an app the process's default cache is used."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        owner = scope.get("app")
        entitlements = getattr(getattr(owner, "state", None), "entitlement_cache", None)
        if entitlements is None or scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        with bind(entitlements):
            await self.app(scope, receive, send)


def membership_changed(session: AsyncSession, org_id: str) -> None:
    """Identity's membership hook: a role change or (de)activation changes who holds a seat;
    the clinic's entitlement answers are dropped here now and on every instance at commit."""
    invalidate_on_commit(session, org_id)


async def seat_check(session: AsyncSession, org_id: str, role: str) -> None:
    """Identity's seat hook: refuse a clinician beyond the clinic's paid seats (409)."""
    await ensure_seat_available(session, org_id=org_id, role=role)
    # The membership is about to change: entitlement answers too, on every instance.
    invalidate_on_commit(session, org_id)
