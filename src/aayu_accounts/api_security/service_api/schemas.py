"""Request and response bodies of the service API (API.md). Unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntrospectRequest(_Body):
    token: Token


class IntrospectResponse(_Body):
    """``active`` is false for anything that is not a live, fully signed-in session; the
    other members are present only when it is true."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "active": True,
                    "user_id": "0b9c…",
                    "org_ids": ["5d1e…"],
                    "mfa": True,
                    "expires_at": "2026-11-28T21:30:00Z",
                },
                {"active": False},
            ]
        },
    )

    active: bool
    user_id: str | None = None
    org_ids: list[str] | None = None
    mfa: bool | None = None
    # The earlier of the absolute expiry and the idle deadline as of this call.
    expires_at: datetime | None = None


class EntitlementRequest(_Body):
    org_id: Identifier
    user_id: Identifier
    feature: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EntitlementResponse(_Body):
    allowed: bool
    reason: str | None = None
    remaining: int | None = None


class UsageRequest(_Body):
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    org_id: Identifier
    user_id: Identifier
    metric: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    quantity: int = Field(ge=1, le=1_000_000)
    occurred_at: AwareDatetime


class UsageAccepted(_Body):
    status: str = "accepted"
    # False when this event_id had been recorded before (a redelivery, counted once).
    recorded: bool


class FlagsRequest(_Body):
    user_id: Identifier | None = None
    org_id: Identifier | None = None


class FlagsResponse(_Body):
    flags: dict[str, bool]
