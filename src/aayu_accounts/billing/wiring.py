"""Billing's part of the composition root: configuration, job handlers, the periodic tick,
plan seeding at start-up and the revenue metrics refresher."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from aayu_accounts.billing import runtime, tasks
from aayu_accounts.billing.plan.catalog import load_catalog
from aayu_accounts.billing.plan.service import seed_plans
from aayu_accounts.billing.revenue.service import metrics_refresher
from aayu_accounts.config import Settings
from aayu_accounts.db import Database

log = structlog.get_logger(__name__)

TICK_SECONDS = 60.0


def install(app: FastAPI, settings: Settings) -> None:
    runtime.configure(settings)

    def register(scheduler: Any, _settings: Settings) -> None:
        scheduler.every(TICK_SECONDS, "billing.tick", tasks.tick)

    app.state.periodic_registrations.append(register)


async def start(app: FastAPI, settings: Settings) -> None:
    """Configure billing, register its periodic tick (the scheduler starts after this), seed
    the plan catalog (idempotent) and export revenue metrics."""
    install(app, settings)
    db: Database = app.state.db
    try:
        async with db.session_scope() as session:
            await seed_plans(session, load_catalog(settings))
    except IntegrityError:
        # Another instance seeded the same plans at the same moment: theirs stand.
        log.info("billing.plans_seeded_elsewhere")
    app.state.metrics_refreshers.append(metrics_refresher(db))
