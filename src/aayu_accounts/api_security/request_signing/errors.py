"""The refusals of a signed request: 401, each with its own stable code (API.md)."""

from __future__ import annotations

from aayu_accounts.errors import AppError


class SignatureRefused(AppError):
    status = 401
    code = "signature_invalid"
    title = "Request signature refused"


class SignatureMissing(SignatureRefused):
    code = "signature_missing"
    title = "Request signature missing"


class SignatureUnknownKey(SignatureRefused):
    code = "signature_unknown_key"
    title = "Unknown signing key"


class SignatureExpired(SignatureRefused):
    code = "signature_expired"
    title = "Request timestamp outside the accepted window"


class SignatureInvalid(SignatureRefused):
    code = "signature_invalid"
    title = "Request signature invalid"


class SignatureReplayed(SignatureRefused):
    code = "signature_replayed"
    title = "Request nonce already used"
