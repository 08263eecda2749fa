"""Opaque bearer tokens (sessions, resets, invitations): 256 random bits, stored only as hashes.

A token is high-entropy, so a plain SHA-256 is enough for storage (no salt or slow hash needed:
nothing to brute-force); a database leak then yields nothing that signs anyone in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits, ASVS asks for at least 64


def new_token() -> str:
    """A fresh URL-safe token (43 characters) carrying 256 bits of randomness."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest to store and look the token up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash.lower())
