"""Seeding and tampering helpers for the audit tests."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.chain import EventFields, event_hash
from aayu_accounts.audit.service import RecordedEvent
from aayu_accounts.audit.verify import VerifyReport, verify_chain
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent

ACTIONS = (
    AuditAction.ORG_CREATED,
    AuditAction.MEMBER_ROLE_CHANGED,
    AuditAction.LOGIN_SUCCEEDED,
    AuditAction.FLAG_UPDATED,
)


async def seed(db: Database, count: int, *, org_id: str = "org-a") -> list[RecordedEvent]:
    """``count`` events, each committed in its own unit of work, as requests would."""
    events = []
    for index in range(count):
        async with db.session_scope() as session:
            events.append(
                await record(
                    session,
                    ACTIONS[index % len(ACTIONS)],
                    actor=Actor.user(f"user-{index % 3}"),
                    org_id=org_id,
                    target_type="thing",
                    target_id=f"t-{index}",
                    details={"index": index, "old": {"n": index - 1}, "new": {"n": index}},
                )
            )
    return events


async def verify(db: Database, **options: object) -> VerifyReport:
    async with db.session_scope(write=False) as session:
        return await verify_chain(session, **options)  # type: ignore[arg-type]


async def execute(db: Database, sql: str, **params: object) -> None:
    async with db.session_scope() as session:
        await session.execute(text(sql), params)


async def rehash_from(session: AsyncSession, sequence: int) -> None:
    """What a careful intruder does after an edit: recompute every hash from there on."""
    rows = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.sequence >= sequence - 1)
            .order_by(AuditEvent.sequence)
        )
    ).all()
    previous = rows[0].hash if rows[0].sequence == sequence - 1 else rows[0].prev_hash
    for row in rows:
        if row.sequence < sequence:
            continue
        row.prev_hash = previous
        row.hash = event_hash(previous, EventFields.of(row))
        previous = row.hash
    await session.flush()
