"""Password hashing (Argon2id, off the event loop) and the NIST 800-63B password policy."""

from aayu_accounts.identity.password.hasher import PasswordHasher, normalize_password
from aayu_accounts.identity.password.policy import PasswordPolicy, PolicyViolation, ViolationCode

__all__ = [
    "PasswordHasher",
    "PasswordPolicy",
    "PolicyViolation",
    "ViolationCode",
    "normalize_password",
]
