"""Identity's expected failures, named after the state; ``code`` values are API.md's.

One module for the identity area rather than one per sub-module: several sub-modules raise the
same condition (``TokenInvalid`` for verification, reset and invitation tokens), and clients
branch on the code, which must not depend on which sub-module noticed the problem.
"""

from __future__ import annotations

from typing import Any

from aayu_accounts.errors import AppError


class InvalidCredentials(AppError):
    # One body for unknown email, wrong password, deactivated and unverified accounts.
    status = 401
    code = "invalid_credentials"
    title = "Invalid credentials"


class CaptchaRequired(AppError):
    status = 401
    code = "captcha_required"
    title = "CAPTCHA required"

    def __init__(self, challenge: dict[str, Any]) -> None:
        super().__init__(
            "Solve the CAPTCHA and send its payload as 'captcha'.", extra={"captcha": challenge}
        )


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, retry_after: int) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            "Too many failed attempts; try again later.",
            extra={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class MfaInvalid(AppError):
    status = 401
    code = "mfa_invalid"
    title = "Invalid verification code"


class MfaCodeInvalid(AppError):
    """A wrong code while enrolling or disabling (the caller is signed in: 400, not 401)."""

    status = 400
    code = "mfa_invalid"
    title = "Invalid verification code"


class MfaNotEnrolling(AppError):
    status = 409
    code = "mfa_not_enrolling"
    title = "No TOTP enrollment in progress"


class MfaAlreadyEnabled(AppError):
    status = 409
    code = "mfa_already_enabled"
    title = "TOTP is already enabled"


class MfaNotEnabled(AppError):
    status = 409
    code = "mfa_not_enabled"
    title = "TOTP is not enabled"


class MfaRequiredByOrg(AppError):
    status = 403
    code = "mfa_required_by_org"
    title = "A clinic you belong to requires two-factor authentication"


class MfaEnrollmentRequired(AppError):
    status = 403
    code = "mfa_enrollment_required"
    title = "Two-factor authentication must be set up first"


class PolicyAcceptanceRequired(AppError):
    status = 403
    code = "policy_acceptance_required"
    title = "The current terms of service and privacy policy must be accepted first"


class PolicyVersionMismatch(AppError):
    status = 409
    code = "policy_version_mismatch"
    title = "Not the current version of the document"


class TokenInvalid(AppError):
    status = 400
    code = "token_invalid"
    title = "Invalid or expired token"


class PasswordTooWeak(AppError):
    status = 422
    code = "password_too_weak"
    title = "Password too weak"

    def __init__(self, reasons: list[dict[str, str]]) -> None:
        super().__init__("The password does not meet the policy.", extra={"reasons": reasons})


class CurrentPasswordWrong(AppError):
    status = 400
    code = "invalid_current_password"
    title = "The current password is wrong"


class LastOwner(AppError):
    status = 409
    code = "last_owner"
    title = "A clinic must keep at least one active owner"


class InsufficientRole(AppError):
    status = 403
    code = "forbidden"
    title = "Your role does not allow this"


class AlreadyMember(AppError):
    status = 409
    code = "already_member"
    title = "Already a member of this clinic"


class InvitationEmailMismatch(AppError):
    status = 403
    code = "invitation_email_mismatch"
    title = "The invitation was sent to another email address"


class SignupDetailsRequired(AppError):
    status = 422
    code = "validation_error"
    title = "Validation error"
