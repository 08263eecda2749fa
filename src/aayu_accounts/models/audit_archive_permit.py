"""Permission slips for the archival job, the only path allowed to delete audit events.

The delete trigger on ``audit_events`` lets a row go only when a permit covering its sequence
exists. The archival job inserts a permit, deletes, and removes the permit in the same
transaction, so no other transaction ever sees one (SQLite has no session variables, and one
mechanism on both databases is easier to reason about than two).
"""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base, IdMixin


class AuditArchivePermit(IdMixin, Base):
    __tablename__ = "audit_archive_permits"

    through_sequence: Mapped[int] = mapped_column(BigInteger)
