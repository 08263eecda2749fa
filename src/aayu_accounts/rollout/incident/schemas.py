"""Shapes of the incident API (API.md: POST /admin/rollback, GET /admin/incidents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="manual rollback", max_length=2000)


class IncidentView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    severity: str
    actor: str
    reason: str
    created_at: datetime
    flags_before: dict[str, Any]
    flags_after: dict[str, Any]
    metrics: dict[str, Any]
    timeline: list[dict[str, Any]]
    report_path: str | None


class RollbackResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: str
    config_version: int
    flags: dict[str, Any]
    elapsed_ms: float
