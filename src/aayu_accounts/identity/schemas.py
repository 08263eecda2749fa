"""Request and response bodies of the identity routes (Pydantic v2, unknown fields refused).

One module for the area: the sub-modules share most shapes (the user in a sign-in answer is
the ``/me`` body), and API.md documents them together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from aayu_accounts.identity.permissions import Role

# Long enough for any passphrase the policy could accept (128) and its error to be reported;
# short enough that nobody makes us hash megabytes.
_PASSWORD = Field(min_length=1, max_length=1024)
_TOKEN = Field(min_length=1, max_length=256)
_NAME = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- public ----------------------------------------------------------------------------


class RegisterIn(Strict):
    email: EmailStr
    password: str = _PASSWORD
    full_name: str = _NAME
    organization_name: str = _NAME


class StatusOut(Strict):
    status: str


class TokenIn(Strict):
    token: str = _TOKEN


class LoginIn(Strict):
    email: EmailStr
    password: str = _PASSWORD
    captcha: str | None = Field(default=None, max_length=20_000)


class MembershipOut(Strict):
    org_id: str
    org_name: str
    role: str


class MeOut(Strict):
    id: str
    email: str
    full_name: str
    mfa_enabled: bool
    memberships: list[MembershipOut]
    required_actions: list[str] = Field(
        default_factory=list,
        description="Steps to complete before other routes answer: mfa_enrollment, "
        "accept_policies.",
    )


class LoginOut(Strict):
    token: str
    expires_at: datetime
    user: MeOut
    required_actions: list[str]


class MfaStepOut(Strict):
    mfa_required: Literal[True] = True
    mfa_token: str
    expires_at: datetime


class MfaIn(Strict):
    mfa_token: str = _TOKEN
    code: str = Field(min_length=6, max_length=64)


class ResetRequestIn(Strict):
    email: EmailStr


class ResetConfirmIn(Strict):
    token: str = _TOKEN
    new_password: str = _PASSWORD


class CaptchaOut(BaseModel):
    # The challenge's fields depend on the provider (ALTCHA, Turnstile, hCaptcha).
    model_config = ConfigDict(extra="allow")


# --- the signed-in user ----------------------------------------------------------------


class PasswordChangeIn(Strict):
    current_password: str = _PASSWORD
    new_password: str = _PASSWORD


class SessionOut(Strict):
    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class TotpEnrollmentOut(Strict):
    secret: str
    otpauth_uri: str
    qr_svg: str


class TotpCodeIn(Strict):
    code: str = Field(min_length=6, max_length=16)


class RecoveryCodesOut(Strict):
    recovery_codes: list[str]
    token: str | None = Field(
        default=None,
        description="The session token after rotation (the cookie is replaced as well).",
    )


class DocumentStatusOut(Strict):
    current_version: str
    accepted_version: str | None
    accepted_at: datetime | None


class PolicyStatusOut(Strict):
    terms: DocumentStatusOut
    privacy: DocumentStatusOut
    acceptance_required: bool


class PolicyAcceptIn(Strict):
    terms_version: str = Field(min_length=1, max_length=40)
    privacy_version: str = Field(min_length=1, max_length=40)


# --- organizations ---------------------------------------------------------------------


class BaaOut(Strict):
    version: str
    signed_at: datetime
    signed_by: str | None


class OrgOut(Strict):
    id: str
    name: str
    require_mfa: bool
    created_at: datetime
    idle_timeout_minutes: int
    baa: BaaOut | None


class OrgPatchIn(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    require_mfa: bool | None = None
    idle_timeout_minutes: int | None = Field(default=None, ge=5, le=15)


class BaaIn(Strict):
    version: str = Field(min_length=1, max_length=40)


class MemberOut(Strict):
    user_id: str
    email: str
    full_name: str
    role: str
    active: bool
    mfa_enabled: bool


class MemberPatchIn(Strict):
    role: Role | None = None
    active: bool | None = None


class InvitationIn(Strict):
    email: EmailStr
    role: Role


class InvitationOut(Strict):
    id: str
    email: str
    role: str
    expires_at: datetime


class AcceptInvitationIn(Strict):
    token: str = _TOKEN
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class AcceptInvitationOut(Strict):
    org_id: str
    org_name: str
    role: str
    user_id: str
    created_account: bool
    token: str | None = Field(
        default=None,
        description=(
            "A signed-in caller's session token after rotation (joining a clinic is a "
            "privilege change; the cookie is replaced as well, the old token ends)."
        ),
    )
