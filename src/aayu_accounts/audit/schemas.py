"""What the audit API returns. Events are read-only: there are no input bodies here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from aayu_accounts.models.audit_event import AuditEvent


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class AuditEventOut(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

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

    @field_validator("details", mode="before")
    @classmethod
    def _no_details_is_empty(cls, value: object) -> object:
        return value or {}

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        # The row's attributes carry the same names: no field-by-field copy to keep in step.
        return cls.model_validate(event)


class AuditEventPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[AuditEventOut]
    next_cursor: str | None
