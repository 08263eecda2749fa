"""``create_app()``: settings, lifespan, middleware order and exception handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

from aayu_accounts import __version__
from aayu_accounts.api import include_routers
from aayu_accounts.api_security import wiring as api_security_wiring
from aayu_accounts.audit.service import configure_append_mode as configure_audit_append_mode
from aayu_accounts.audit.tasks import periodic_registration as audit_periodic_registration
from aayu_accounts.billing import wiring as billing_wiring
from aayu_accounts.config import Settings, get_settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database, add_statement_observer
from aayu_accounts.email import sender as email_sender
from aayu_accounts.errors import PROBLEM_CONTENT_TYPE, install_error_handlers
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.jobs import LeaderElector, Scheduler, Worker, queue_stats
from aayu_accounts.kit.asgi import RequestContextMiddleware, parse_networks
from aayu_accounts.log_config import configure_logging
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import wiring as observability_wiring
from aayu_accounts.rollout import wiring as rollout_wiring

log = structlog.get_logger(__name__)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {s: {"description": "Problem (RFC 9457)", "content": content} for s in statuses}


async def _background(
    app: FastAPI, settings: Settings, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    db: Database = app.state.db
    worker = Worker(db, poll_seconds=settings.job_poll_seconds, on_finished=metrics.observe_job)
    db.on_jobs_committed(worker.wake)
    app.state.worker = worker
    elector = LeaderElector(db, lease_seconds=settings.leader_lease_seconds)
    scheduler = Scheduler(elector)
    app.state.scheduler = scheduler
    for register in getattr(app.state, "periodic_registrations", []):
        register(scheduler, settings)
    return [
        asyncio.create_task(worker.run_forever(stop), name="aayu-worker"),
        asyncio.create_task(scheduler.run_forever(stop), name="aayu-scheduler"),
    ]


def _job_queue_refresher(db: Database) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        async with db.session_scope(write=False) as session:
            stats = await queue_stats(session)
        for status in ("queued", "running", "dead"):
            metrics.JOB_QUEUE_DEPTH.labels(status).set(stats["depth"].get(status, 0))
        metrics.JOB_QUEUE_OLDEST_AGE.set(stats["oldest_queued_age_s"])

    return refresh


def create_app(  # noqa: PLR0915 - the composition root: every area's start, stop and middleware
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    keyring: Keyring | None = None,
) -> FastAPI:
    """Build the application. ``database`` lets tests bind it to their own connection;
    ``keyring`` lets them share the keyring their fixtures encrypt with."""
    settings = settings or get_settings()
    settings.check_production()
    configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns_db = database is None
        app.state.db = database or Database.from_settings(settings)
        # The database breaker and the per-process health checks, before anything queries.
        app.state.observability = await observability_wiring.start(app, settings)
        # Keys before anything that may read or write encrypted fields.
        app.state.keyring_runtime = await start_keyring(settings, app.state.db, keyring=keyring)
        add_statement_observer(app.state.db.engine, metrics.observe_statement)
        app.state.metrics_refreshers.append(_job_queue_refresher(app.state.db))
        # Flag listeners start here, after any fork of the server's workers (NOTES.md).
        await app.state.flag_runtime.start(app.state.db)
        # Identity: hasher (dummy hash made now), throttles, CAPTCHA, session cache listener.
        app.state.identity = await IdentityRuntime.start(settings)
        app.state.identity.seat_check = billing_wiring.seat_check
        app.state.identity.membership_changed = billing_wiring.membership_changed
        # Nonce memory, rate limits and service-client lookups (Redis when configured).
        api_security_wiring.start(app, settings, app.state.db)
        email_sender.configure(settings)
        # Billing: the plan catalog seeded (idempotent), revenue metrics.
        await billing_wiring.start(app, settings)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if settings.run_worker_in_process:
            tasks = await _background(app, settings, stop)
        # Everything made at start-up (modules, routes, settings, pools, caches' shells) lives
        # as long as the process: leave it out of the cyclic collector's full passes, which
        # otherwise walk it all and paused the loop for up to 0.4 s under load (a p99 killer).
        gc.collect()
        gc.freeze()
        log.info("app.started", version=__version__, env=settings.env.value)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=5)
            await app.state.flag_runtime.stop()
            await billing_wiring.stop(app)
            await api_security_wiring.stop(app)
            await app.state.identity.close()
            await app.state.keyring_runtime.stop()
            await observability_wiring.stop(app.state.observability)
            if owns_db:
                await app.state.db.dispose()
            # Back to the collector's care, so start-up objects of a stopped app can be freed.
            gc.unfreeze()
            log.info("app.stopped")

    app = FastAPI(
        title="Aayu Accounts",
        version=__version__,
        description="Identity, billing and safe rollout for the Aayu Well medical scribe.",
        lifespan=lifespan,
        responses=_problem_responses(400, 404, 405, 413, 422, 500, 503),
        # FastAPI's native OpenTelemetry is unused (metrics are Prometheus, observability/);
        # left on, it looks up the global providers and the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.periodic_registrations = []
    app.state.metrics_refreshers = []
    app.state.readiness_checks = {}
    rollout_wiring.install(app, settings)
    # Alert rules (leader), breaker/pool metrics, readiness detail of the dependencies.
    observability_wiring.install(app, settings)
    # Signed audit checkpoints (hourly) and retention (daily), on the leader.
    configure_audit_append_mode(settings.audit_append_mode)
    app.state.periodic_registrations.append(audit_periodic_registration())
    install_error_handlers(app)
    include_routers(app)
    # Added innermost first: the request context wraps everything, so every response
    # (the early 413 included) carries its request id. API security adds, inside it: the
    # security headers, the body-size limit, then CORS, limits, CSRF and signatures.
    api_security_wiring.install(app, settings)
    # Each request sees this instance's entitlement cache (billing/entitlement/cache.py).
    app.add_middleware(billing_wiring.EntitlementCacheMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        observers=[metrics.observe_request],
    )
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
