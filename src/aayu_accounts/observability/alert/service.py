"""Raise and resolve alerts; group, deduplicate and repeat their notifications.

Flow: :func:`raise_alert` upserts the row (one per key) and, when there is news, marks it
``notify_pending`` and enqueues one ``alerts.flush`` job per severity group a little later
(``alert_group_wait_seconds``), so a burst becomes one message. The flush job builds that
message and enqueues one ``alerts.deliver`` job per channel: each channel retries on its own
through the durable queue, and nothing is lost across a restart.

The database down is the one alert the queue cannot carry (it lives in that database): with
a :class:`Database` target and the database unreachable, the message goes out directly from
memory, and the row is written once the database is back, so the resolution still flows.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, stop_after_attempt, wait_random_exponential

from aayu_accounts.config import Settings, get_settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import enqueue, job_handler
from aayu_accounts.kit import clock
from aayu_accounts.models.alert import Alert
from aayu_accounts.models.job import Job
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert import channels, repository
from aayu_accounts.observability.alert.severity import Severity, repeat_seconds

log = structlog.get_logger("aayu_accounts.alerts")

FLUSH_JOB = "alerts.flush"
DELIVER_JOB = "alerts.deliver"
FIRING, RESOLVED, NOTICE = "firing", "resolved", "notice"
MAX_SUMMARY = 1000

AlertTarget = AsyncSession | Database


@dataclass
class _State:
    settings: Settings | None = None
    # Alerts sent directly while the database was unreachable: key -> (severity, summary,
    # runbook, labels, fired_at).
    direct: dict[str, tuple[str, str, str, dict[str, str], datetime]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


_state = _State()


def configure(settings: Settings) -> None:
    """Use ``settings`` for channels, grouping and repeats (the app calls it at start-up)."""
    _state.settings = settings


def current_settings() -> Settings:
    return _state.settings or get_settings()


# --- the public API --------------------------------------------------------------------


async def raise_alert(
    target: AlertTarget,
    key: str,
    severity: Severity | str,
    summary: str,
    runbook: str,
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """Fire ``key`` (or keep it firing). Idempotent; see the module docstring for delivery."""
    level = Severity(severity)
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    summary = summary[:MAX_SUMMARY]
    if isinstance(target, AsyncSession):
        await _raise(target, key, level=level, summary=summary, runbook=runbook, labels=labels)
        return
    try:
        async with target.session_scope() as session:
            await _raise(session, key, level=level, summary=summary, runbook=runbook, labels=labels)
    except Exception as exc:  # the database itself may be what is down
        log.warning("alert.store_unavailable", key=key, error=type(exc).__name__)
        if key not in _state.direct:
            _state.direct[key] = (level.value, summary, runbook, labels, clock.now())
            _send_direct(key, level.value, FIRING, summary=summary, runbook=runbook, labels=labels)


async def recent_alerts(session: AsyncSession, *, limit: int = 50) -> list[Alert]:
    """Firing alerts first, then resolved and notices, newest first (the operations console)."""
    return list(await repository.recent(session, limit))


async def resolve_alert(target: AlertTarget, key: str, *, summary: str | None = None) -> None:
    """Resolve ``key`` if it fires; a resolved notification follows. No-op otherwise."""
    if isinstance(target, AsyncSession):
        await _resolve(target, key, summary)
        return
    try:
        async with target.session_scope() as session:
            await _resolve(session, key, summary)
    except Exception as exc:
        log.warning("alert.store_unavailable", key=key, error=type(exc).__name__)
        direct = _state.direct.pop(key, None)
        if direct is not None:
            severity, old_summary, runbook, labels, _fired = direct
            _send_direct(
                key,
                severity,
                RESOLVED,
                summary=summary or old_summary,
                runbook=runbook,
                labels=labels,
            )


async def notify_once(
    session: AsyncSession,
    key: str,
    severity: Severity | str,
    summary: str,
    runbook: str,
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """An informational notice (the daily summary): sent once, never repeated or resolved."""
    level = Severity(severity)
    now = clock.now()
    row = await repository.by_key(session, key)
    if row is None:
        row = Alert(key=key, fired_at=now)
        session.add(row)
    row.severity, row.status, row.summary, row.runbook = level.value, NOTICE, summary, runbook
    row.labels = dict(labels or {})
    row.group_key = level.value
    row.notify_pending = True
    row.last_raised_at = now
    row.resolved_at = now
    row.notifications = row.notifications or 0
    await session.flush()
    await _schedule_flush(session, level.value)


# --- inside a transaction ----------------------------------------------------------------


async def _raise(
    session: AsyncSession,
    key: str,
    *,
    level: Severity,
    summary: str,
    runbook: str,
    labels: dict[str, str],
) -> None:
    now = clock.now()
    row = await repository.by_key(session, key)
    if row is None:
        direct = _state.direct.pop(key, None)
        row = Alert(
            key=key,
            severity=level.value,
            status=FIRING,
            summary=summary,
            runbook=runbook,
            labels=labels,
            group_key=level.value,
            # Already told directly while the database was down: no second page.
            notify_pending=direct is None,
            notifications=0 if direct is None else 1,
            fired_at=direct[4] if direct else now,
            last_raised_at=now,
            last_notified_at=now if direct else None,
        )
        try:
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:  # raised concurrently elsewhere: that row wins
            return
        if direct is None:
            metrics.ALERTS.labels(level.value, key).inc()
            log.warning("alert.fired", key=key, severity=level.value)
            await _schedule_flush(session, level.value)
        return
    row.last_raised_at = now
    row.summary = summary
    row.labels = labels or row.labels
    if row.status != FIRING:
        row.status = FIRING
        row.severity = level.value
        row.group_key = level.value
        row.runbook = runbook
        row.fired_at = now
        row.resolved_at = None
        row.notify_pending = True
        metrics.ALERTS.labels(level.value, key).inc()
        log.warning("alert.fired", key=key, severity=level.value)
    elif _repeat_due(row, now):
        row.notify_pending = True
    await session.flush()
    if row.notify_pending:
        await _schedule_flush(session, row.group_key)


async def _resolve(session: AsyncSession, key: str, summary: str | None) -> None:
    now = clock.now()
    row = await repository.by_key(session, key)
    direct = _state.direct.pop(key, None)
    if row is None and direct is not None:
        # Fired directly while the database was down: record it, and let the resolution
        # travel through the durable queue like any other.
        severity, old_summary, runbook, labels, fired_at = direct
        row = Alert(
            key=key,
            severity=severity,
            status=FIRING,
            summary=old_summary,
            runbook=runbook,
            labels=labels,
            group_key=severity,
            notify_pending=False,
            notifications=1,
            fired_at=fired_at,
            last_raised_at=now,
            last_notified_at=fired_at,
        )
        session.add(row)
    if row is None or row.status != FIRING:
        return
    row.status = RESOLVED
    row.resolved_at = now
    if summary:
        row.summary = summary[:MAX_SUMMARY]
    row.notify_pending = True
    log.info("alert.resolved", key=key, severity=row.severity)
    await session.flush()
    await _schedule_flush(session, row.group_key)


def _repeat_due(row: Alert, now: datetime) -> bool:
    if row.notify_pending or row.last_notified_at is None:
        return False
    interval = repeat_seconds(current_settings(), row.severity)
    return now - row.last_notified_at >= timedelta(seconds=interval)


async def _schedule_flush(session: AsyncSession, group: str) -> None:
    wait = current_settings().alert_group_wait_seconds
    now = clock.now()
    # One flush per group per wait period: a burst of raises becomes one message.
    bucket = int(now.timestamp() // max(wait, 1.0))
    dedupe_key = f"{FLUSH_JOB}:{group}:{bucket}"
    run_at = now + timedelta(seconds=wait)
    added = await enqueue(
        session, FLUSH_JOB, {"group": group}, run_at=run_at, dedupe_key=dedupe_key
    )
    if added is None:
        status = await session.scalar(select(Job.status).where(Job.dedupe_key == dedupe_key))
        if status != "queued":
            # That flush already ran (or is running) without this news: one more.
            await enqueue(session, FLUSH_JOB, {"group": group}, run_at=run_at)


async def mark_repeats_due(session: AsyncSession) -> int:
    """Mark firing alerts whose repeat interval has passed, and make sure every group with
    pending news has a flush coming (the leader calls this on each evaluation)."""
    now = clock.now()
    groups: set[str] = set(await repository.groups_with_pending(session))
    for row in await repository.firing(session):
        if _repeat_due(row, now):
            row.notify_pending = True
            groups.add(row.group_key)
    await session.flush()
    for group in groups:
        await _schedule_flush(session, group)
    return len(groups)


# --- jobs ----------------------------------------------------------------------------------


@job_handler(FLUSH_JOB)
async def flush_group(session: AsyncSession, payload: dict[str, Any]) -> None:
    """Turn the group's pending news into one message, one delivery job per channel."""
    group = str(payload["group"])
    rows = await repository.pending_in_group(session, group)
    if not rows:
        return
    message = channels.build_message(group, rows)
    now = clock.now()
    for index, channel in enumerate(channels.configured_channels(current_settings())):
        await enqueue(
            session,
            DELIVER_JOB,
            {"channel": channel.kind, "target": channel.target, "message": message},
            dedupe_key=f"{DELIVER_JOB}:{message['id']}:{index}",
        )
    for row in rows:
        row.notify_pending = False
        row.last_notified_at = now
        row.notifications += 1
    await session.flush()


@job_handler(DELIVER_JOB, max_attempts=12)
async def deliver_notification(_session: AsyncSession, payload: dict[str, Any]) -> None:
    channel = channels.Channel(str(payload["channel"]), str(payload["target"]))
    await channels.deliver(channel, payload["message"], current_settings())


# --- direct delivery, while the database is away ----------------------------------------------


def _send_direct(
    key: str, severity: str, status: str, *, summary: str, runbook: str, labels: dict[str, str]
) -> None:
    now = clock.now()
    row = Alert(
        key=key,
        severity=severity,
        status=status,
        summary=summary,
        runbook=runbook,
        labels=labels,
        group_key=severity,
        notifications=0,
        fired_at=now,
        resolved_at=now if status == RESOLVED else None,
    )
    message = channels.build_message(severity, [row])
    if status == FIRING:
        metrics.ALERTS.labels(severity, key).inc()
    try:
        task = asyncio.get_running_loop().create_task(_deliver_direct(message))
    except RuntimeError:
        log.error(  # noqa: TRY400 - no loop is the whole story; no trace needed
            "alert.direct_unsent", key=key, status=status
        )
        return
    _state.tasks.add(task)
    task.add_done_callback(_state.tasks.discard)


async def _deliver_direct(message: dict[str, Any]) -> None:
    settings = current_settings()
    for channel in channels.configured_channels(settings):
        retrying = AsyncRetrying(
            stop=stop_after_attempt(5),
            wait=wait_random_exponential(multiplier=0.5, max=10),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await channels.deliver(channel, message, settings)
        except Exception as exc:
            log.error(  # noqa: TRY400 - the type is enough; messages may carry URLs
                "alert.direct_failed", channel=channel.kind, error=type(exc).__name__
            )


async def drain_direct(wait_seconds: float = 5.0) -> None:
    """Wait for direct deliveries in flight (shutdown and tests)."""
    if _state.tasks:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await asyncio.gather(*_state.tasks, return_exceptions=True)
