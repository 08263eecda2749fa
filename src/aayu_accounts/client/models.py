"""Typed answers of the service endpoints (API.md, *Service requests*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Introspection:
    active: bool
    user_id: str | None = None
    org_ids: tuple[str, ...] = field(default_factory=tuple)
    mfa: bool | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Introspection:
        return cls(
            active=bool(data.get("active")),
            user_id=data.get("user_id"),
            org_ids=tuple(data.get("org_ids") or ()),
            mfa=data.get("mfa"),
            expires_at=_parse_time(data.get("expires_at")),
        )


@dataclass(frozen=True)
class Entitlement:
    allowed: bool
    reason: str | None = None
    remaining: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entitlement:
        return cls(bool(data.get("allowed")), data.get("reason"), data.get("remaining"))


@dataclass(frozen=True)
class UsageReceipt:
    """``recorded`` is False when the service had this ``event_id`` already (counted once)."""

    recorded: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageReceipt:
        return cls(bool(data.get("recorded", True)))
