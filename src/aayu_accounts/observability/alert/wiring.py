"""How observability plugs into the application (called from ``app.py``).

``install`` (at build time): the leader's alert evaluation, the metrics refreshed at scrape
time (pool usage, breaker states) and the readiness detail. ``start``/``stop`` (lifespan, after
any fork): the database breaker on the engine, the per-process health checks, and the bridge
from breaker state changes to alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from aayu_accounts import errors
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Scheduler
from aayu_accounts.kit import clock, redis_client, resilience
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import repository, service
from aayu_accounts.observability.alert.evaluator import Evaluator
from aayu_accounts.observability.alert.rules import BREAKER_ALERTS
from aayu_accounts.observability.health import HealthMonitor, dependencies_ready, pool_usage

log = structlog.get_logger("aayu_accounts.alerts")


def _record_breaker_state(name: str, _old: str, new: str) -> None:
    metrics.observe_breaker_state(name, new)


def _record_problem(status: int, code: str) -> None:
    metrics.HTTP_ERRORS.labels(str(status), code).inc()


# Metrics follow breaker changes and rendered problems in every process.
resilience.add_state_observer(_record_breaker_state)
resilience.add_outcome_observer(metrics.observe_dependency_call)
errors.add_problem_observer(_record_problem)


@dataclass
class BreakerAlerts:
    """Raises an alert when a dependency's breaker opens and resolves it when it closes."""

    db: Database
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __call__(self, name: str, _old: str, new: str) -> None:
        spec = BREAKER_ALERTS.get(name)
        if spec is None or new == "half-open":
            return
        key, severity, summary, runbook = spec
        if new == "open":
            work = service.raise_alert(self.db, key, severity, summary, runbook)
        else:
            work = service.resolve_alert(self.db, key)
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop (a CLI outside asyncio): the log line must do
            work.close()
            log.error("alert.breaker_unsent", dependency=name, state=new)  # noqa: TRY400
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, wait_seconds: float = 5.0) -> None:
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class ObservabilityRuntime:
    monitor: HealthMonitor
    breaker_alerts: BreakerAlerts
    redis: Redis | None
    stop_event: asyncio.Event
    task: asyncio.Task[None] | None = None


def register_periodic(scheduler: Scheduler, settings: Settings) -> None:
    """Leader-only: evaluate the alert rules, repeat what still fires, the daily summary."""
    evaluator = Evaluator(settings)

    async def evaluate(db: Database) -> None:
        await evaluator.run(db)

    scheduler.every(settings.alert_evaluate_seconds, "alerts.evaluate", evaluate)


def install(app: FastAPI, settings: Settings) -> None:
    resilience.configure(settings)
    service.configure(settings)
    app.state.periodic_registrations.append(register_periodic)
    app.state.readiness_checks["dependencies"] = dependencies_ready

    async def refresh() -> None:
        for dependency in resilience.all_dependencies():
            metrics.observe_breaker_state(dependency.name, dependency.state)
        db: Database | None = getattr(app.state, "db", None)
        if db is None:
            return
        for state, value in pool_usage(db).items():
            metrics.DB_POOL_CONNECTIONS.labels(state).set(value)
        try:
            async with db.session_scope(write=False) as session:
                count = await repository.active_sessions(
                    session, clock.now(), settings.session_idle_minutes * 60
                )
        except Exception as exc:  # a database outage must not take /metrics down with it
            log.warning("metrics.active_sessions_failed", error=type(exc).__name__)
            return
        metrics.ACTIVE_SESSIONS.set(count)

    app.state.metrics_refreshers.append(refresh)


async def start(app: FastAPI, settings: Settings) -> ObservabilityRuntime:
    return await start_for(app.state.db, settings)


async def start_for(db: Database, settings: Settings) -> ObservabilityRuntime:
    """The per-process part: database breaker guard, breaker alerts and the health monitor.
    Every process that touches the database runs it (the server, and ``aayu-accounts worker``)."""
    database = resilience.dependency(resilience.DATABASE)
    # A process starts with its breakers closed; so does an app built anew in the same one.
    database.reset()
    if db.dialect != "sqlite":
        # A database server can be unreachable; an embedded SQLite file cannot, and a slow
        # local write lock must not be mistaken for an outage.
        resilience.guard_engine(db.engine)
        db.add_session_guard(database.allow)
    breaker_alerts = BreakerAlerts(db)
    resilience.add_state_observer(breaker_alerts)
    redis = redis_client.create_redis(settings)
    monitor = HealthMonitor(db, settings, redis)
    runtime = ObservabilityRuntime(monitor, breaker_alerts, redis, asyncio.Event())
    # A Database bound to one connection (the tests' transaction) has no pool to watch, and
    # a background ping would share that connection with the request being served.
    if not isinstance(db.bind, AsyncConnection):
        runtime.task = asyncio.create_task(
            monitor.run_forever(runtime.stop_event), name="aayu-health-monitor"
        )
    return runtime


async def stop(runtime: ObservabilityRuntime) -> None:
    runtime.stop_event.set()
    if runtime.task is not None:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(runtime.task, timeout=5)
    resilience.remove_state_observer(runtime.breaker_alerts)
    await runtime.breaker_alerts.drain()
    await service.drain_direct()
    if runtime.redis is not None:
        with contextlib.suppress(Exception):
            await runtime.redis.aclose()
    # Several workers: this one's live gauges (pool, health, leader) must not outlive it.
    metrics.mark_this_process_dead()
