"""The audit trail: one row per event, hash-chained, append-only (triggers refuse UPDATE/DELETE).

``sequence`` is assigned by the application while it holds the chain lock (see
``audit/service.py``), not by a database sequence: a sequence value is taken before commit, so
with one the numbering would have holes from rolled-back transactions and could commit out of
order. Unique ``sequence`` is the last line of defence against a forked chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base, IdMixin

AUDIT_EVENTS_TABLE = "audit_events"


class AuditEvent(IdMixin, Base):
    __tablename__ = AUDIT_EVENTS_TABLE
    __table_args__ = (
        Index("ix_audit_events_org_id_sequence", "org_id", "sequence"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    sequence: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column()
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    org_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hash_version: Mapped[int] = mapped_column(SmallInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
