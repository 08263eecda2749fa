"""The few cryptographic operations the service needs, over ``cryptography``'s vetted ones.

Nothing here is invented: AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce per
message, HMAC-SHA256 (RFC 2104), keys from the operating system's CSPRNG. A random nonce is
safe for far more messages than one key version will ever encrypt (2^32 per key, SP 800-38D
section 8.3) because keys rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAC_BYTES = 32


class DecryptionFailed(Exception):
    """The ciphertext is not authentic for this key and associated data (or is damaged).

    Deliberately says nothing more: which of key, nonce, tag or associated data was wrong is
    exactly what an attacker probing the format would like to learn.
    """


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def aead_seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """``nonce || ciphertext || tag`` under AES-256-GCM."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def aead_open(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Inverse of :func:`aead_seal`; raises :class:`DecryptionFailed`."""
    _check_key(key)
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise DecryptionFailed from None


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def encode_key(key: bytes) -> str:
    """Text form of a key for secret stores (which hold strings): unpadded base64url."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_key(text: str) -> bytes:
    """Inverse of :func:`encode_key`; raises ``ValueError`` unless it yields a 256-bit key."""
    cleaned = text.strip()
    try:
        key = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("key is not base64url text") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError("AES-256-GCM needs a 32-byte key")
