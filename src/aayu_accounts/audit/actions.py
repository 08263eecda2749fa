"""Every auditable action, in one enum: ``area:subject:verb``.

One enum (not free strings) so a typo is a type error, the set of actions is reviewable in one
place, and the audit API can document the filter values. Other areas add members here as they
grow; values are stored in the database and hashed into the chain, so a value must never be
renamed once released (add a new member instead).
"""

from __future__ import annotations

import re
from enum import StrEnum

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")


class AuditAction(StrEnum):
    # crypto: the keyring
    KEY_CREATED = "crypto:key:created"
    KEY_ROTATED = "crypto:key:rotated"
    KEY_RETIRED = "crypto:key:retired"
    DATA_REENCRYPTED = "crypto:data:reencrypted"

    # identity: accounts, sign-in, sessions, organizations
    USER_REGISTERED = "identity:user:registered"
    EMAIL_VERIFIED = "identity:email:verified"
    LOGIN_SUCCEEDED = "identity:login:succeeded"
    LOGIN_FAILED = "identity:login:failed"
    LOGIN_LOCKED_OUT = "identity:login:locked_out"
    CAPTCHA_REQUIRED = "identity:captcha:required"
    BRUTE_FORCE_DETECTED = "identity:brute_force:detected"
    MFA_ENROLLMENT_STARTED = "identity:mfa:enrollment_started"
    MFA_ENROLLED = "identity:mfa:enrolled"
    MFA_USED = "identity:mfa:used"
    MFA_FAILED = "identity:mfa:failed"
    MFA_DISABLED = "identity:mfa:disabled"
    RECOVERY_CODE_USED = "identity:recovery_code:used"
    SESSION_CREATED = "identity:session:created"
    SESSION_REVOKED = "identity:session:revoked"
    LOGGED_OUT = "identity:session:logged_out"
    PASSWORD_CHANGED = "identity:password:changed"
    PASSWORD_RESET_REQUESTED = "identity:password_reset:requested"
    PASSWORD_RESET_EMAILED = "identity:password_reset:emailed"
    PASSWORD_RESET_COMPLETED = "identity:password_reset:completed"
    INVITATION_CREATED = "identity:invitation:created"
    INVITATION_ACCEPTED = "identity:invitation:accepted"
    INVITATION_REVOKED = "identity:invitation:revoked"
    MEMBER_ROLE_CHANGED = "identity:member:role_changed"
    MEMBER_DEACTIVATED = "identity:member:deactivated"
    MEMBER_REACTIVATED = "identity:member:reactivated"
    ORG_CREATED = "identity:org:created"
    ORG_UPDATED = "identity:org:updated"
    POLICY_ACCEPTED = "identity:policy:accepted"
    BAA_RECORDED = "identity:baa:recorded"
    PLATFORM_ADMIN_CREATED = "identity:platform_admin:created"

    # api security: service clients, signatures, CSRF, rate limits
    INVALID_SIGNATURE = "api_security:signature:invalid"
    SERVICE_CLIENT_CREATED = "api_security:service_client:created"
    SERVICE_CLIENT_ROTATED = "api_security:service_client:rotated"
    SERVICE_CLIENT_DISABLED = "api_security:service_client:disabled"
    CSRF_FAILED = "api_security:csrf:failed"
    RATE_LIMITED = "api_security:rate_limit:exceeded"

    # rollout: flags, rollbacks, incidents, user documents, legacy migration
    FLAG_CREATED = "rollout:flag:created"
    FLAG_UPDATED = "rollout:flag:updated"
    ROLLBACK_EXECUTED = "rollout:rollback:executed"
    INCIDENT_CREATED = "rollout:incident:created"
    USER_DOCUMENT_WRITTEN = "rollout:user_document:written"
    USER_DOCUMENT_DELETED = "rollout:user_document:deleted"
    USER_DOCUMENTS_IMPORTED = "rollout:user_document:imported"
    LEGACY_USERS_MIGRATED = "rollout:legacy_users:migrated"

    # audit: the trail itself
    EVENTS_EXPORTED = "audit:events:exported"
    CHECKPOINT_WRITTEN = "audit:checkpoint:written"
    CHECKPOINT_GAP_DETECTED = "audit:checkpoint:gap_detected"
    CHECKPOINT_UPLOAD_FAILED = "audit:checkpoint:upload_failed"
    EVENTS_ARCHIVED = "audit:events:archived"

    # billing
    SUBSCRIPTION_CREATED = "billing:subscription:created"
    SUBSCRIPTION_UPDATED = "billing:subscription:updated"
    SUBSCRIPTION_CANCELED = "billing:subscription:canceled"
    PAYMENT_FAILED = "billing:payment:failed"
    INVOICE_PAID = "billing:invoice:paid"
    WEBHOOK_RECEIVED = "billing:webhook:received"
    WEBHOOK_PROCESSED = "billing:webhook:processed"
    SEATS_CHANGED = "billing:seats:changed"
    PLAN_CHANGED = "billing:plan:changed"
    SUBSCRIPTION_RESUMED = "billing:subscription:resumed"
    SUBSCRIPTION_STATUS_CHANGED = "billing:subscription:status_changed"
    PAYMENT_METHOD_UPDATED = "billing:payment_method:updated"
    SUBSCRIPTION_RENEWED = "billing:subscription:renewed"
    DUNNING_RESTRICTED = "billing:dunning:restricted"
    DUNNING_RECOVERED = "billing:dunning:recovered"
    PLANS_SEEDED = "billing:plans:seeded"
    PORTAL_SESSION_CREATED = "billing:portal_session:created"
    CHECKOUT_SESSION_CREATED = "billing:checkout_session:created"
    CHECKOUT_COMPLETED = "billing:checkout:completed"
    SUBSCRIPTION_DUPLICATE_CANCELED = "billing:subscription:duplicate_canceled"

    @property
    def area(self) -> str:
        return self.value.split(":", 1)[0]
