"""Webhook errors."""

from __future__ import annotations

from aayu_accounts.errors import AppError


class SignatureInvalid(AppError):
    status = 400
    code = "signature_invalid"
    title = "The Stripe-Signature header does not verify"


class EventNotReady(Exception):
    """The event refers to something we have not stored yet (ordering): retry the job later."""
