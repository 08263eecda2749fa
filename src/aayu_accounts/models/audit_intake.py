"""Audit events committed but not yet linked into the chain (deferred append mode only).

``audit.record`` inserts here, with the event's leaf hash, in the caller's transaction; the
linker (``audit/linker.py``, migration ``0010_audit_intake``) moves committed rows into
``audit_events`` under the chain lock right after the commit. Triggers refuse UPDATE, and
DELETE except by the linking function. Written and read with Core statements only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base


class AuditIntake(Base):
    __tablename__ = "audit_intake"
    __table_args__ = (CheckConstraint("length(leaf) = 32", name="leaf_length"),)

    # The order in which events arrived (a database sequence: gaps and out-of-order commits
    # are harmless here, the chain's own numbering is assigned when linking).
    intake_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(36), unique=True)
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
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    hash_version: Mapped[int] = mapped_column(SmallInteger)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
