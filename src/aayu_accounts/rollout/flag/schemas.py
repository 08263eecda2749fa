"""Shapes of the flag admin API (API.md, *Operations*)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

FlagKey = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
OpaqueId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Percent = Annotated[int, Field(ge=0, le=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetList(Strict):
    user_ids: list[OpaqueId] = Field(default_factory=list, max_length=10_000)
    org_ids: list[OpaqueId] = Field(default_factory=list, max_length=10_000)


class ScheduleStepIn(Strict):
    run_at: AwareDatetime
    enabled: bool | None = None
    rollout_percent: Percent | None = None


class ScheduleStepOut(Strict):
    id: str
    run_at: datetime
    enabled: bool | None
    rollout_percent: int | None
    applied_at: datetime | None
    outcome: str | None


class FlagUpdate(Strict):
    """A partial change; absent fields stay as they are. ``schedule`` replaces pending steps."""

    enabled: bool | None = None
    rollout_percent: Percent | None = None
    allow: TargetList | None = None
    deny: TargetList | None = None
    schedule: list[ScheduleStepIn] | None = Field(default=None, max_length=100)
    requires: list[FlagKey] | None = Field(default=None, max_length=20)
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    owner: Annotated[str, StringConstraints(max_length=200)] | None = None


class FlagView(Strict):
    key: str
    enabled: bool
    rollout_percent: int
    description: str
    updated_at: datetime
    owner: str
    allow: TargetList
    deny: TargetList
    requires: list[str]
    bucket_group: str | None
    schedule: list[ScheduleStepOut]


class FlagEvaluationRequest(Strict):
    user_id: OpaqueId | None = None
    org_id: OpaqueId | None = None


class FlagEvaluationResponse(Strict):
    flags: dict[str, bool]
    version: int
