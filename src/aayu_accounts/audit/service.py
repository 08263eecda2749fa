"""Recording audit events: ``await audit.record(session, AuditAction.X, actor=..., ...)``.

The event is written in the caller's transaction (flush, never commit): an action that rolls
back leaves no event, and an event is never lost when its action commits. Appends are
serialized by the chain lock (see repository.py), held until the caller's transaction ends,
so record the event late in a unit of work, just before it is committed.

IP, user agent and request id come from the request context (``kit.asgi`` contextvars), so a
service never passes them around. Details hold old and new values that are not secret; keys
that name secrets are refused outright, so a slip fails in the tests instead of leaking.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit import intake, repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.canonical import normalize
from aayu_accounts.audit.chain import HASH_VERSION, EventFields, leaf_hash
from aayu_accounts.audit.errors import ExportLimitReached, InvalidCursor, InvalidTimeRange
from aayu_accounts.audit.repository import EventFilter
from aayu_accounts.audit.schemas import AuditEventOut, AuditEventPage, ExportFormat
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, request_id_var, user_agent_var
from aayu_accounts.kit.ids import new_id
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.observability.metrics import (
    AUDIT_EXPORTED_EVENTS,
    AUDIT_EXPORTS,
    DATA_EXPORTS,
)

ActorKind = Literal["user", "service", "system", "anonymous"]
OUTCOMES = frozenset({"success", "failure", "denied", "error"})

# Detail keys that name a secret. An ``_id`` suffix is allowed (``session_id`` names a row).
_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|totp|otp|api_?key|private_?key|recovery_?code|signature",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, a service client, the system itself, or nobody signed in."""

    kind: ActorKind
    id: str | None

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls("user", user_id)

    @classmethod
    def service(cls, client_id: str) -> Actor:
        return cls("service", client_id)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls("anonymous", None)


class SecretInAuditDetails(ValueError):
    """A detail key names a secret: audit rows must never hold one."""


def _check_details(details: Any, path: str = "details") -> None:
    if isinstance(details, dict):
        for key, value in details.items():
            if _SECRET_KEY.search(key) and not key.endswith("_id"):
                raise SecretInAuditDetails(f"{path}.{key} looks like a secret")
            _check_details(value, f"{path}.{key}")
    elif isinstance(details, list):
        for item in details:
            _check_details(item, path)


AppendMode = Literal["inline", "deferred"]
_append_mode: AppendMode = "inline"


def configure_append_mode(mode: AppendMode) -> AppendMode:
    """Set how this process appends (``AAYU_AUDIT_APPEND_MODE``); returns the previous mode.

    ``deferred`` applies on PostgreSQL only (SQLite serializes writers anyway). Both modes
    link under the same lock and head, so processes may differ during a change of setting.
    """
    global _append_mode  # one process-wide choice, made at start-up
    previous, _append_mode = _append_mode, mode
    return previous


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


@dataclass(slots=True)
class RecordedEvent:
    """What :func:`record` wrote: the event's fields (those of ``AuditEvent``), not attached to
    any session. ``sequence``, ``prev_hash`` and ``hash`` are None until the event is linked
    (deferred append mode)."""

    id: str
    occurred_at: datetime
    actor_kind: str
    actor_id: str | None
    org_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    hash_version: int
    sequence: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor: Actor,
    org_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
    link_now: bool = False,
) -> RecordedEvent:
    """Append one event to the chain in the caller's transaction and return it.

    The row is written with a Core statement (on PostgreSQL, the append function), so what
    is returned is a copy of its fields, not an object in the session.

    In the deferred append mode (PostgreSQL) the event goes to the intake with the commit
    (buffered: all of a unit of work's events in one statement, see intake.py) and is linked
    right after it: the returned copy then has no ``sequence``, ``prev_hash`` or ``hash``
    yet. ``link_now`` links it inline whatever the mode (for callers that read the chain
    under its lock in the same transaction, like the export limit).

    Raises ``SecretInAuditDetails`` for a detail key that names a secret, ``ValueError`` or
    ``TypeError`` for details with no exact JSON form (NaN, huge integers, arbitrary objects)
    and for an unknown ``outcome``.
    """
    if not isinstance(action, AuditAction):
        raise TypeError("action must be an AuditAction")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = normalize(dict(details or {}))
    assert isinstance(clean, dict)
    _check_details(clean)

    values: dict[str, Any] = {
        "id": new_id(),
        "occurred_at": clock.now(),
        "actor_kind": actor.kind,
        "actor_id": _clip(actor.id, 100),
        "org_id": org_id,
        "action": action.value,
        "target_type": _clip(target_type, 50),
        "target_id": _clip(target_id, 200),
        "outcome": outcome,
        "ip": _clip(client_ip_var.get(), 64),
        "user_agent": _clip(user_agent_var.get(), 300),
        "request_id": _clip(request_id_var.get(), 128),
        "details": clean,
        "hash_version": HASH_VERSION,
    }
    event = RecordedEvent(**values)
    # The leaf is hashed before the lock: the lock is held only for linking and inserting.
    leaf = leaf_hash(EventFields.of(event))
    if session.get_bind().dialect.name == "postgresql":
        if _append_mode == "deferred" and not link_now:
            values["leaf"] = leaf
            intake.buffer(session, values)
            return event
        if not session.in_nested_transaction():
            # Events recorded earlier in this transaction reach the intake first (their order).
            await intake.write_buffered(session)
    appended = await repository.append(session, values, leaf)
    event.sequence, event.prev_hash, event.hash = (
        appended.sequence,
        appended.prev_hash,
        appended.hash,
    )
    return event


# -- reading ---------------------------------------------------------------------------------

MAX_PAGE = 200
DEFAULT_PAGE = 50
EXPORT_BATCH = 500


@dataclass(frozen=True)
class EventQuery:
    """Filters of the listing and the export; ``until`` is exclusive."""

    action: AuditAction | None = None
    actor_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None  # one of OUTCOMES

    def __post_init__(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise InvalidTimeRange("'since' must be before 'until'")


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"before:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "before" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("The cursor is not one this API returned.") from exc


def _criteria(org_id: str | None, query: EventQuery, cursor: str | None) -> EventFilter:
    return EventFilter(
        org_id=org_id,
        action=query.action.value if query.action else None,
        actor_id=query.actor_id,
        since=query.since,
        until=query.until,
        outcome=query.outcome,
        before_sequence=decode_cursor(cursor) if cursor else None,
    )


async def _page(session: AsyncSession, criteria: EventFilter, limit: int) -> AuditEventPage:
    limit = max(1, min(limit, MAX_PAGE))
    rows = await repository.list_events(session, criteria, limit=limit + 1)
    more = len(rows) > limit
    items = [AuditEventOut.of(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].sequence) if more and items else None
    return AuditEventPage(items=items, next_cursor=next_cursor)


async def list_org_events(
    session: AsyncSession,
    org_id: str,
    query: EventQuery,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> AuditEventPage:
    """One clinic's events, newest first. The caller has checked membership and role
    (``audit:read``); the org filter here is what keeps other clinics' events out."""
    return await _page(session, _criteria(org_id, query, cursor), limit)


async def list_platform_events(
    session: AsyncSession,
    query: EventQuery,
    *,
    org_id: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> AuditEventPage:
    """Events across every clinic (and platform-level ones), for platform administrators only;
    the caller has checked that the actor is one."""
    return await _page(session, _criteria(org_id, query, cursor), limit)


async def activity(
    session: AsyncSession, action: AuditAction, *, since: datetime, until: datetime, buckets: int
) -> list[int]:
    """How many ``action`` events (every clinic) fell in each of ``buckets`` equal slices of
    [since, until), oldest first: the operations console's charts (sign-ins per hour). Reads
    only the timestamps; for platform administrators, as :func:`list_platform_events`."""
    if buckets < 1 or since >= until:
        raise InvalidTimeRange("'since' must be before 'until'")
    width = (until - since) / buckets
    counts = [0] * buckets
    for moment in await repository.occurrence_times(
        session, action=action.value, since=since, until=until
    ):
        counts[min(int((moment - since) / width), buckets - 1)] += 1
    return counts


# -- exporting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportTicket:
    """An export that was allowed and audited; stream it with :func:`stream_export`."""

    event_id: str
    org_id: str | None
    query: EventQuery
    format: ExportFormat


def _start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def start_export(
    session: AsyncSession,
    *,
    actor: Actor,
    org_id: str | None,
    query: EventQuery,
    export_format: ExportFormat,
    exports_per_day: int,
) -> ExportTicket:
    """Check the per-user daily limit and record the export (in the caller's transaction).

    Raises :class:`ExportLimitReached` (429). The count is taken under the chain lock, so two
    concurrent exports cannot both squeeze under the limit. ``org_id`` None is a platform-wide
    export: only for platform administrators or the operator's CLI.
    """
    await repository.lock_chain(session)
    now = clock.now()
    day = _start_of_day(now)
    if actor.id is not None:
        used = await repository.count_events(
            session, action=AuditAction.EVENTS_EXPORTED.value, actor_id=actor.id, since=day
        )
        if used >= exports_per_day:
            AUDIT_EXPORTS.labels(export_format.value, "limited").inc()
            retry_after = int((day + timedelta(days=1) - now).total_seconds())
            raise ExportLimitReached(exports_per_day, retry_after)
    event = await record(
        session,
        AuditAction.EVENTS_EXPORTED,
        actor=actor,
        org_id=org_id,
        link_now=True,  # the next export's count (under the lock) must see this one
        target_type="audit_events",
        details={
            "format": export_format.value,
            "scope": "org" if org_id else "platform",
            "filters": {
                "action": query.action.value if query.action else None,
                "actor_id": query.actor_id,
                "since": query.since,
                "until": query.until,
                "outcome": query.outcome,
            },
        },
    )
    AUDIT_EXPORTS.labels(export_format.value, "allowed").inc()
    DATA_EXPORTS.labels("audit").inc()
    return ExportTicket(event.id, org_id, query, export_format)


CSV_COLUMNS = (
    "sequence",
    "id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "org_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # OWASP CSV injection: a cell a spreadsheet would run as a formula is quoted as text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _render(event: AuditEvent, export_format: ExportFormat) -> str:
    out = AuditEventOut.of(event)
    if export_format is ExportFormat.JSONL:
        return out.model_dump_json() + "\n"
    row = out.model_dump(mode="json")
    row["details"] = json.dumps(row["details"], sort_keys=True, separators=(",", ":"))
    return _csv_line([_csv_cell(row[column]) for column in CSV_COLUMNS])


async def stream_export(db: Database, ticket: ExportTicket) -> AsyncIterator[str]:
    """The export's lines, oldest first, read in batches from a read-only unit of work.

    Runs after the recording transaction committed (the response streams after the edge
    commits), so the export's own event is part of what it can see.
    """
    if ticket.format is ExportFormat.CSV:
        yield _csv_line(list(CSV_COLUMNS))
    criteria = _criteria(ticket.org_id, ticket.query, None)
    after = 0
    exported = 0
    async with db.session_scope(write=False) as session:
        while True:
            rows = await repository.list_events_ascending(
                session, criteria, after_sequence=after, limit=EXPORT_BATCH
            )
            for row in rows:
                yield _render(row, ticket.format)
            exported += len(rows)
            if len(rows) < EXPORT_BATCH:
                break
            after = rows[-1].sequence
            session.expunge_all()
    AUDIT_EXPORTED_EVENTS.inc(exported)
