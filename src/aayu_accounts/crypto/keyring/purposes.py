"""The purposes keys serve. One purpose, one key family: a key never does two jobs."""

from __future__ import annotations

from enum import StrEnum


class KeyUse(StrEnum):
    SIGN = "sign"
    ENCRYPT = "encrypt"
    INDEX = "index"
    # Public-key signatures (Ed25519): whoever holds only the public key can verify, not forge.
    ASYMMETRIC_SIGN = "asymmetric-sign"


class KeyPurpose(StrEnum):
    SESSION = "session"  # session and cookie signing
    CSRF = "csrf"
    CAPTCHA = "captcha"  # CAPTCHA challenge HMAC
    CLIENT_SECRET = "client-secret"  # noqa: S105 - a purpose name, not a secret; wraps service-client secrets (recoverable for HMAC checks)
    DATA = "data"  # personal fields at rest (data keys, wrapped by the master key)
    BLIND_INDEX = "blind-index"  # HMAC of normalized values for equality lookups
    AUDIT_CHECKPOINT = "audit-checkpoint"  # HMAC of audit checkpoints written before Ed25519
    AUDIT_SIGNING = "audit-signing"  # Ed25519: signs audit checkpoints and archives

    @property
    def use(self) -> KeyUse:
        if self in (KeyPurpose.DATA, KeyPurpose.CLIENT_SECRET):
            return KeyUse.ENCRYPT
        if self is KeyPurpose.BLIND_INDEX:
            return KeyUse.INDEX
        if self is KeyPurpose.AUDIT_SIGNING:
            return KeyUse.ASYMMETRIC_SIGN
        return KeyUse.SIGN


# The name of the master key in the secret store. It wraps every key version kept in the
# database (envelope encryption); it never encrypts data itself.
MASTER_KEY_SECRET = "master-key"  # noqa: S105 - the secret's name, not its value
