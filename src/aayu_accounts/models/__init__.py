"""Every ORM table, one module per table; importing this package registers them all."""

from aayu_accounts.models.alert import Alert
from aayu_accounts.models.audit_archive_permit import AuditArchivePermit
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.audit_intake import AuditIntake
from aayu_accounts.models.auth_session import AuthSession
from aayu_accounts.models.base import Base
from aayu_accounts.models.email_token import EmailToken
from aayu_accounts.models.feature_flag import FeatureFlag
from aayu_accounts.models.flag_config_state import FlagConfigState
from aayu_accounts.models.flag_schedule_step import FlagScheduleStep
from aayu_accounts.models.incident import Incident
from aayu_accounts.models.invitation import Invitation
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.job import Job
from aayu_accounts.models.key_version import KeyVersionRecord
from aayu_accounts.models.leader_lease import LeaderLease
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.membership import Membership
from aayu_accounts.models.mfa_challenge import MfaChallenge
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.outbox_email import OutboxEmail
from aayu_accounts.models.plan import Plan
from aayu_accounts.models.recovery_code import RecoveryCode
from aayu_accounts.models.service_client import ServiceClient
from aayu_accounts.models.service_client_secret import ServiceClientSecret
from aayu_accounts.models.stripe_event import StripeEvent
from aayu_accounts.models.subscription import Subscription
from aayu_accounts.models.usage_event import UsageEvent
from aayu_accounts.models.user import User
from aayu_accounts.models.user_document import UserDocument

__all__ = [
    "Alert",
    "AuditArchivePermit",
    "AuditEvent",
    "AuditIntake",
    "AuthSession",
    "Base",
    "EmailToken",
    "FeatureFlag",
    "FlagConfigState",
    "FlagScheduleStep",
    "Incident",
    "Invitation",
    "Invoice",
    "Job",
    "KeyVersionRecord",
    "LeaderLease",
    "LegacyUserLink",
    "Membership",
    "MfaChallenge",
    "Organization",
    "OutboxEmail",
    "Plan",
    "RecoveryCode",
    "ServiceClient",
    "ServiceClientSecret",
    "StripeEvent",
    "Subscription",
    "UsageEvent",
    "User",
    "UserDocument",
]
