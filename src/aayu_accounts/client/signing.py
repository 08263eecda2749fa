"""The request signature of API.md's *Service requests*, shared by the SDK and the server.

Pure standard library, so a backend that does not use the SDK can copy this one file::

    {timestamp}\\n{nonce}\\n{METHOD}\\n{path}{?query if any}\\n{sha256 hex of the raw body}

signed with HMAC-SHA256 keyed with the client's secret (the printed text, as UTF-8), sent as
lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

KEY_ID_HEADER = "X-Aayu-Key-Id"
TIMESTAMP_HEADER = "X-Aayu-Timestamp"
NONCE_HEADER = "X-Aayu-Nonce"
SIGNATURE_HEADER = "X-Aayu-Signature"

NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(
    *, timestamp: str, nonce: str, method: str, path: str, query: str, body: bytes
) -> bytes:
    """The exact bytes that are signed. ``query`` is the raw query string without ``?``."""
    target = f"{path}?{query}" if query else path
    return f"{timestamp}\n{nonce}\n{method.upper()}\n{target}\n{body_digest(body)}".encode()


def signature(secret: bytes, canonical: bytes) -> str:
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """22 URL-safe characters (128 random bits): inside the 16-64 ``[A-Za-z0-9_-]`` range."""
    return secrets.token_urlsafe(16)


def secret_key(secret: str) -> bytes:
    """The HMAC key is the secret exactly as printed (64 hex characters, 256 bits), as UTF-8:
    what ``openssl dgst -sha256 -hmac "$SECRET"`` uses too."""
    return secret.encode("utf-8")


def sign_headers(
    *,
    key_id: str,
    secret: bytes,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers for one request. A fresh nonce and timestamp every call: a retried
    request must be signed again, or the server refuses it as a replay."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = nonce or new_nonce()
    canonical = canonical_string(
        timestamp=stamp, nonce=once, method=method, path=path, query=query, body=body
    )
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: once,
        SIGNATURE_HEADER: signature(secret, canonical),
    }
