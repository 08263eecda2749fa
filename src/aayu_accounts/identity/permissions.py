"""The one permission matrix: which clinic role may do what.

Every org-scoped route names a :class:`Permission`; the dependency and the service both check
it against this table, so changing who may do something is a one-line change here.
"""

from __future__ import annotations

from enum import StrEnum

from aayu_accounts.identity.errors import InsufficientRole


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    CLINICIAN = "clinician"
    BILLING = "billing"
    AUDITOR = "auditor"


class Permission(StrEnum):
    ORG_READ = "org:read"
    ORG_UPDATE = "org:update"
    MEMBERS_READ = "members:read"
    MEMBERS_INVITE = "members:invite"
    MEMBERS_UPDATE = "members:update"
    BAA_SIGN = "baa:sign"
    AUDIT_READ = "audit:read"
    AUDIT_EXPORT = "audit:export"
    SUBSCRIPTION_READ = "subscription:read"
    SUBSCRIPTION_MANAGE = "subscription:manage"
    INVOICES_READ = "invoices:read"
    USAGE_READ = "usage:read"


_ALL = frozenset(Role)
_OWNER_ADMIN = frozenset({Role.OWNER, Role.ADMIN})

MATRIX: dict[Permission, frozenset[Role]] = {
    Permission.ORG_READ: _ALL,
    Permission.ORG_UPDATE: _OWNER_ADMIN,
    Permission.MEMBERS_READ: _OWNER_ADMIN,
    Permission.MEMBERS_INVITE: _OWNER_ADMIN,
    Permission.MEMBERS_UPDATE: _OWNER_ADMIN,
    Permission.BAA_SIGN: frozenset({Role.OWNER}),
    Permission.AUDIT_READ: frozenset({Role.OWNER, Role.ADMIN, Role.AUDITOR}),
    Permission.AUDIT_EXPORT: frozenset({Role.OWNER, Role.AUDITOR}),
    Permission.SUBSCRIPTION_READ: frozenset({Role.OWNER, Role.ADMIN, Role.BILLING}),
    Permission.SUBSCRIPTION_MANAGE: frozenset({Role.OWNER, Role.BILLING}),
    Permission.INVOICES_READ: frozenset({Role.OWNER, Role.BILLING}),
    Permission.USAGE_READ: frozenset({Role.OWNER, Role.ADMIN, Role.BILLING}),
}

# Only an owner may hand out or take away ownership: an admin must not promote themselves.
ROLES_ONLY_OWNER_GRANTS = frozenset({Role.OWNER})


def allowed(role: str, permission: Permission) -> bool:
    return role in MATRIX[permission]


def require(role: str, permission: Permission) -> None:
    """Raises :class:`InsufficientRole` (403) when ``role`` lacks ``permission``."""
    if not allowed(role, permission):
        raise InsufficientRole()
