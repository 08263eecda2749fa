"""Verifying one signed request, exactly as API.md specifies.

Checks run cheapest first, and the nonce is recorded only once the signature is proven, so
unsigned garbage cannot fill the nonce memory or burn a legitimate client's nonces:

1. the four headers are present and well-formed           -> ``signature_missing`` / ``_invalid``
2. the timestamp is within the window, either way          -> ``signature_expired``
3. the key id names an enabled client                      -> ``signature_unknown_key``
4. the HMAC matches one of its live secrets (constant time) -> ``signature_invalid``
5. the nonce was not used with this key inside the window  -> ``signature_replayed``
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aayu_accounts.api_security.request_signing.directory import ClientDirectory
from aayu_accounts.api_security.request_signing.errors import (
    SignatureExpired,
    SignatureInvalid,
    SignatureMissing,
    SignatureReplayed,
    SignatureUnknownKey,
)
from aayu_accounts.api_security.request_signing.nonces import NonceStore
from aayu_accounts.api_security.service_client.service import ClientCredentials
from aayu_accounts.client.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    NONCE_PATTERN,
    SIGNATURE_HEADER,
    SIGNATURE_PATTERN,
    TIMESTAMP_HEADER,
    canonical_string,
    signature,
)
from aayu_accounts.kit import clock

MAX_KEY_ID_LENGTH = 64
_TIMESTAMP_DIGITS = 12


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    query: str
    body: bytes
    # Lower-case header names (ASGI's form).
    headers: Mapping[str, str]


@dataclass(frozen=True)
class PresentedKey:
    """What a refused request claimed to be (for the audit row; never the signature)."""

    key_id: str | None
    client: ClientCredentials | None


class SignatureVerifier:
    def __init__(self, directory: ClientDirectory, nonces: NonceStore, window_seconds: int) -> None:
        self.directory = directory
        self.nonces = nonces
        self.window_seconds = window_seconds

    async def verify(
        self, request: SignedRequest, presented: list[PresentedKey]
    ) -> ClientCredentials:
        """The verified client; raises a ``SignatureRefused`` subclass otherwise.

        ``presented`` receives what the request claimed, so the caller can audit a refusal.
        """
        headers = request.headers
        key_id = headers.get(KEY_ID_HEADER.lower())
        stamp = headers.get(TIMESTAMP_HEADER.lower())
        nonce = headers.get(NONCE_HEADER.lower())
        given = headers.get(SIGNATURE_HEADER.lower())
        if not key_id or not stamp or not nonce or not given:
            raise SignatureMissing(
                "Signed requests carry X-Aayu-Key-Id, X-Aayu-Timestamp, X-Aayu-Nonce and "
                "X-Aayu-Signature."
            )
        presented.append(PresentedKey(key_id[:MAX_KEY_ID_LENGTH], None))
        if len(key_id) > MAX_KEY_ID_LENGTH:
            raise SignatureUnknownKey("The key id is not known.")
        if not stamp.isdigit() or len(stamp) > _TIMESTAMP_DIGITS:
            raise SignatureInvalid("X-Aayu-Timestamp must be Unix seconds.")
        if not NONCE_PATTERN.match(nonce):
            raise SignatureInvalid("X-Aayu-Nonce must be 16 to 64 characters of [A-Za-z0-9_-].")
        if not SIGNATURE_PATTERN.match(given):
            raise SignatureInvalid("X-Aayu-Signature must be 64 lowercase hex characters.")
        skew = int(stamp) - clock.unix_now()
        if abs(skew) > self.window_seconds:
            raise SignatureExpired(
                f"The timestamp is more than {self.window_seconds} seconds from the server clock."
            )

        client = await self.directory.lookup(key_id)
        if client is None or client.disabled:
            raise SignatureUnknownKey("The key id is not known.")
        presented[-1] = PresentedKey(key_id, client)
        canonical = canonical_string(
            timestamp=stamp,
            nonce=nonce,
            method=request.method,
            path=request.path,
            query=request.query,
            body=request.body,
        )
        expected_given = given.encode("ascii")
        matched = False
        # Every live secret is tried (no early exit), so timing does not tell which matched.
        for key in client.keys_valid_at(clock.now()):
            matched |= hmac.compare_digest(
                signature(key, canonical).encode("ascii"), expected_given
            )
        if not matched:
            raise SignatureInvalid("The signature does not match the request.")
        # Remembered for twice the window: a timestamp up to window seconds ahead stays
        # acceptable until window seconds after it.
        if not await self.nonces.first_use(key_id, nonce, 2 * self.window_seconds):
            raise SignatureReplayed("This nonce was already used with this key.")
        return client
