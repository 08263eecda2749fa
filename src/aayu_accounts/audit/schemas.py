"""What the audit API returns. Events are read-only: there are no input bodies here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from aayu_accounts.models.audit_event import AuditEvent


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class AuditEventOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    sequence: int
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
    hash: str
    prev_hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            sequence=event.sequence,
            occurred_at=event.occurred_at,
            actor_kind=event.actor_kind,
            actor_id=event.actor_id,
            org_id=event.org_id,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            outcome=event.outcome,
            ip=event.ip,
            user_agent=event.user_agent,
            request_id=event.request_id,
            details=event.details or {},
            hash=event.hash,
            prev_hash=event.prev_hash,
        )


class AuditEventPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[AuditEventOut]
    next_cursor: str | None
