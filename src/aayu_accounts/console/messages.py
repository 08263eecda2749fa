"""The words the console shows: one sentence per error ``code`` and per flash key.

Errors: :func:`error_text` turns a service's ``AppError`` into what a clinic's staff can act
on; a code missing here falls back to the error's own ``detail`` (which never carries secrets).
Flash keys are set by :func:`aayu_accounts.console.page.redirect` (``flash="saved"``) and shown
once on the next page; an unknown key shows nothing, so a forged cookie can inject no text.
Areas add their own entries to ``ERRORS`` / ``FLASHES`` here (small, precise edits).
"""

from __future__ import annotations

from aayu_accounts.errors import AppError

ERRORS: dict[str, str] = {
    # sign-in and recovery
    "invalid_credentials": (
        "The email or password is incorrect, or the account is not verified or not active."
    ),
    "captcha_required": "Too many failed attempts: solve the check below, then sign in again.",
    "too_many_attempts": "Too many attempts. Wait a few minutes, then try again.",
    "mfa_invalid": (
        "That code is not valid. Use the current code from your app, or a recovery code."
    ),
    "token_invalid": "This link is invalid, already used or expired. Ask for a new one.",
    "password_too_weak": "Choose a stronger password.",
    "invalid_current_password": "Your current password is incorrect.",
    "validation_error": "Some fields are not valid. Check them and try again.",
    "user_exists": "An account with this email address exists already.",
    "account_exists": "An account with this email address exists already: sign in to accept.",
    # MFA and policies
    "mfa_already_enabled": "Two-factor authentication is already on.",
    "mfa_not_enabled": "Two-factor authentication is not on.",
    "mfa_not_enrolling": "Start the enrollment again: the previous one expired.",
    "mfa_required_by_org": (
        "Your clinic requires two-factor authentication: it cannot be turned off."
    ),
    "mfa_enrollment_required": "Your clinic requires two-factor authentication: set it up first.",
    "policy_acceptance_required": "Accept the current terms and privacy policy to continue.",
    "policy_version_mismatch": "The policies changed meanwhile: read and accept the new versions.",
    # clinics
    "already_member": "That person is already a member of this clinic.",
    "invitation_email_mismatch": (
        "This invitation was sent to another email address: sign in with that account."
    ),
    "last_owner": "A clinic needs an owner: make someone else owner first.",
    "seats_exceeded": "All paid clinician seats are taken: add seats under Billing first.",
    # billing
    "payment_failed": "The card was declined.",
    "subscription_exists": "The clinic has a subscription already.",
    "no_subscription": "The clinic has no subscription.",
    "payment_method_required": "Enter a card: this plan has no free trial.",
    "unknown_plan": "Choose one of the plans.",
    "invalid_seats": "That number of seats is not allowed for this plan.",
    "seats_below_usage": "More clinicians are active than that: deactivate some first.",
    "subscription_not_changeable": "The subscription cannot be changed in its current status.",
    "payment_provider_unavailable": "The payment provider is unavailable. Try again shortly.",
    # audit and operations
    "export_limit_reached": "You reached today's export limit. Try again tomorrow.",
    "invalid_cursor": "That page link is stale: start the list again.",
    # generic
    "csrf_failed": "The form expired or came from another site. Reload the page and retry.",
    "forbidden": "You do not have permission to do this.",
    "insufficient_role": "Your role in this clinic does not allow this.",
    "not_found": "Not found.",
    "unauthenticated": "Sign in first.",
    "conflict": "That conflicts with the current state. Reload the page and retry.",
    "dependency_unavailable": "A service we depend on is unavailable. Try again shortly.",
    "internal_error": "Something went wrong on our side. Try again shortly.",
}

FLASHES: dict[str, str] = {
    "signed_out": "You are signed out.",
    "idle_signed_out": "You were signed out after a period of inactivity.",
    "verification_sent": (
        "Check your inbox: we sent a link to verify your email address. Then sign in."
    ),
    "email_verified": "Your email address is verified. You can sign in now.",
    "reset_requested": (
        "If an account exists for that address, we sent a link to reset the password."
    ),
    "password_reset": "Your password is changed. Sign in with the new one.",
    "password_changed": "Your password is changed. Your other sessions were signed out.",
    "profile_saved": "Saved.",
    "mfa_enabled": "Two-factor authentication is on.",
    "mfa_disabled": "Two-factor authentication is off.",
    "session_revoked": "That session is signed out.",
    "sessions_revoked": "Your other sessions are signed out.",
    "policies_accepted": "Thank you: the current terms and privacy policy are accepted.",
    "invitation_sent": "The invitation is sent.",
    "invitation_accepted": "Welcome: you joined the clinic.",
    "member_updated": "The member is updated.",
    "settings_saved": "The clinic settings are saved.",
    "baa_recorded": "The BAA is recorded.",
    # billing, audit, operations
    "subscribed": "The clinic is subscribed.",
    "subscription_changed": "The subscription is changed.",
    "subscription_canceled": "The subscription will end at the end of the period.",
    "subscription_resumed": "The subscription will continue.",
    "payment_method_updated": "The payment method is updated.",
    "flag_saved": "The flag is saved. Every instance applies it within a second.",
    "rolled_back": "Rolled back: the new path is off everywhere and an incident is recorded.",
}


def error_text(error: AppError) -> str:
    return ERRORS.get(error.code) or error.detail


def flash_text(key: str) -> str | None:
    return FLASHES.get(key)
