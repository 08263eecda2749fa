"""MFA primitives: TOTP with replay protection, QR codes, recovery codes. No tables here."""

from aayu_accounts.identity.mfa.recovery import (
    RECOVERY_CODE_COUNT,
    consume_recovery_code,
    generate_recovery_codes,
    hash_recovery_code,
    normalize_recovery_code,
)
from aayu_accounts.identity.mfa.totp import (
    ISSUER,
    current_step,
    new_secret,
    provisioning_uri,
    qr_svg,
    verify_totp,
)

__all__ = [
    "ISSUER",
    "RECOVERY_CODE_COUNT",
    "consume_recovery_code",
    "current_step",
    "generate_recovery_codes",
    "hash_recovery_code",
    "new_secret",
    "normalize_recovery_code",
    "provisioning_uri",
    "qr_svg",
    "verify_totp",
]
