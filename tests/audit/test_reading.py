"""Listing with filters and cursors (org-scoped and platform-wide), exports and their limit."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.errors import ExportLimitReached, InvalidCursor, InvalidTimeRange
from aayu_accounts.audit.schemas import ExportFormat
from aayu_accounts.audit.service import (
    CSV_COLUMNS,
    EventQuery,
    activity,
    list_org_events,
    list_platform_events,
    start_export,
    stream_export,
)
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock


async def _seed_two_clinics(db: Database, clock: FrozenClock) -> None:
    plan = [
        ("org-a", AuditAction.LOGIN_SUCCEEDED, "alice"),
        ("org-a", AuditAction.MEMBER_ROLE_CHANGED, "alice"),
        ("org-b", AuditAction.LOGIN_SUCCEEDED, "bob"),
        ("org-a", AuditAction.LOGIN_FAILED, "carol"),
        ("org-a", AuditAction.LOGIN_SUCCEEDED, "carol"),
        ("org-b", AuditAction.ORG_UPDATED, "bob"),
        ("org-a", AuditAction.INVITATION_CREATED, "alice"),
    ]
    for org_id, action, actor in plan:
        clock.advance(timedelta(minutes=1))
        async with db.session_scope() as session:
            await record(session, action, actor=Actor.user(actor), org_id=org_id)


async def _list(db: Database, org_id: str, query: EventQuery, **kwargs: object) -> list[str]:
    async with db.session_scope(write=False) as session:
        page = await list_org_events(session, org_id, query, **kwargs)  # type: ignore[arg-type]
        return [f"{item.action}|{item.actor_id}" for item in page.items]


async def test_org_listing_is_scoped_filtered_and_newest_first(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    start = frozen_clock.now()
    await _seed_two_clinics(trail_db, frozen_clock)
    everything = await _list(trail_db, "org-a", EventQuery())
    assert everything == [
        "identity:invitation:created|alice",
        "identity:login:succeeded|carol",
        "identity:login:failed|carol",
        "identity:member:role_changed|alice",
        "identity:login:succeeded|alice",
    ]
    assert await _list(trail_db, "org-a", EventQuery(action=AuditAction.LOGIN_SUCCEEDED)) == [
        "identity:login:succeeded|carol",
        "identity:login:succeeded|alice",
    ]
    assert await _list(trail_db, "org-a", EventQuery(actor_id="carol")) == [
        "identity:login:succeeded|carol",
        "identity:login:failed|carol",
    ]
    window = EventQuery(
        since=start + timedelta(minutes=2), until=start + timedelta(minutes=5)
    )  # minutes 2, 3, 4: role change (org-a), bob (org-b), carol's failure
    assert await _list(trail_db, "org-a", window) == [
        "identity:login:failed|carol",
        "identity:member:role_changed|alice",
    ]
    assert await _list(trail_db, "org-c", EventQuery()) == []
    with pytest.raises(InvalidTimeRange):
        EventQuery(since=start, until=start)


async def test_cursor_pagination_visits_every_event_once(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    await _seed_two_clinics(trail_db, frozen_clock)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    async with trail_db.session_scope(write=False) as session:
        while True:
            page = await list_org_events(session, "org-a", EventQuery(), cursor=cursor, limit=2)
            pages += 1
            seen.extend(item.sequence for item in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == 3
        assert seen == sorted(seen, reverse=True)
        assert len(seen) == len(set(seen)) == 5
        with pytest.raises(InvalidCursor):
            await list_org_events(session, "org-a", EventQuery(), cursor="not-a-cursor")


async def test_platform_listing_spans_clinics(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    await _seed_two_clinics(trail_db, frozen_clock)
    async with trail_db.session_scope(write=False) as session:
        page = await list_platform_events(session, EventQuery(actor_id="bob"))
        assert {item.org_id for item in page.items} == {"org-b"}
        everything = await list_platform_events(session, EventQuery(), limit=200)
        assert {item.org_id for item in everything.items} == {"org-a", "org-b"}
        one = await list_platform_events(session, EventQuery(), org_id="org-b")
        assert len(one.items) == 2


async def _export(db: Database, actor: Actor, fmt: ExportFormat, limit: int = 100) -> str:
    async with db.session_scope() as session:
        ticket = await start_export(
            session,
            actor=actor,
            org_id="org-a",
            query=EventQuery(),
            export_format=fmt,
            exports_per_day=limit,
        )
    return "".join([chunk async for chunk in stream_export(db, ticket)])


async def test_jsonl_export_is_audited_and_complete(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    await _seed_two_clinics(trail_db, frozen_clock)
    body = await _export(trail_db, Actor.user("auditor-1"), ExportFormat.JSONL)
    rows = [json.loads(line) for line in body.splitlines()]
    assert [row["org_id"] for row in rows] == ["org-a"] * 6
    assert rows == sorted(rows, key=lambda r: r["sequence"])  # oldest first
    exported = rows[-1]
    assert exported["action"] == AuditAction.EVENTS_EXPORTED.value
    assert exported["actor_id"] == "auditor-1"
    assert exported["details"]["format"] == "jsonl"
    assert {"hash", "prev_hash", "sequence"} <= set(rows[0])


async def test_csv_export_neutralizes_formulas(trail_db: Database) -> None:
    async with trail_db.session_scope() as session:
        await record(
            session,
            AuditAction.ORG_UPDATED,
            actor=Actor.user('=HYPERLINK("http://evil")'),
            org_id="org-a",
            details={"new": {"name": "+Clinic"}},
        )
    body = await _export(trail_db, Actor.user("auditor-1"), ExportFormat.CSV)
    table = list(csv.reader(io.StringIO(body)))
    assert tuple(table[0]) == CSV_COLUMNS
    first = dict(zip(CSV_COLUMNS, table[1], strict=True))
    assert first["actor_id"] == '\'=HYPERLINK("http://evil")'
    assert json.loads(first["details"]) == {"new": {"name": "+Clinic"}}
    assert len(table) == 3  # header, the event, the export itself


async def test_exports_are_limited_per_user_per_day(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    auditor = Actor.user("auditor-1")
    for _ in range(3):
        await _export(trail_db, auditor, ExportFormat.JSONL, limit=3)
    with pytest.raises(ExportLimitReached) as refused:
        await _export(trail_db, auditor, ExportFormat.CSV, limit=3)
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) > 0
    await _export(trail_db, Actor.user("auditor-2"), ExportFormat.JSONL, limit=3)
    frozen_clock.advance(timedelta(days=1))
    await _export(trail_db, auditor, ExportFormat.JSONL, limit=3)


async def test_outcome_filter_and_activity_counts(
    trail_db: Database, frozen_clock: FrozenClock
) -> None:
    start = frozen_clock.now()
    await _seed_two_clinics(trail_db, frozen_clock)
    async with trail_db.session_scope() as session:
        await record(
            session,
            AuditAction.LOGIN_FAILED,
            actor=Actor.user("dave"),
            org_id="org-a",
            outcome="failure",
        )
    assert await _list(trail_db, "org-a", EventQuery(outcome="failure")) == [
        "identity:login:failed|dave"
    ]
    assert len(await _list(trail_db, "org-a", EventQuery(outcome="success"))) == 5
    async with trail_db.session_scope(write=False) as session:
        # Sign-ins at minutes 1, 3 (org-b) and 5; three slices of [0, 6) minutes.
        counts = await activity(
            session,
            AuditAction.LOGIN_SUCCEEDED,
            since=start,
            until=start + timedelta(minutes=6),
            buckets=3,
        )
        assert counts == [1, 1, 1]
        with pytest.raises(InvalidTimeRange):
            await activity(
                session, AuditAction.LOGIN_SUCCEEDED, since=start, until=start, buckets=3
            )
