"""The audit trail: complete, tamper-evident, searchable, retained six years.

Record with ``from aayu_accounts.audit import Actor, AuditAction, record``.
"""

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record

__all__ = ["Actor", "AuditAction", "record"]
