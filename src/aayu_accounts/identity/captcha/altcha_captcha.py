"""ALTCHA: a self-hosted proof of work, so no third party sees who signs in.

The server hands out a challenge (a hash of a salt and a secret number, HMAC-signed, with an
expiry inside the salt); the browser finds the number and sends back the base64 JSON of its
solution. Verification recomputes hash and signature (constant-time comparisons), checks the
expiry against ``kit.clock``, and claims the solution in the shared store until it expires, so
a solved challenge buys exactly one attempt.

The HMAC key can be a function returning the keys in force, the signing one first: challenges
are signed with the current key and solutions are accepted under any key still loaded, so a
rotation of the CAPTCHA key (published on one instance, picked up by the others on their
keyring refresh) fails no challenge handed out before it, and a retired key stops at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from altcha import v1 as altcha_v1

from aayu_accounts.identity.throttle.store import ThrottleStore
from aayu_accounts.kit import clock

ALGORITHM: altcha_v1.AlgoType = "SHA-256"
# A solution is a few hundred bytes; anything much larger is not one.
MAX_PAYLOAD_CHARS = 4096

HmacKey = str | bytes
# The keys in force, the one that signs new challenges first.
HmacKeys = Callable[[], Sequence[HmacKey]]


class AltchaCaptcha:
    provider = "altcha"

    def __init__(
        self,
        hmac_key: HmacKey | HmacKeys,
        store: ThrottleStore,
        *,
        max_number: int = 100_000,
        expires_seconds: int = 300,
    ) -> None:
        if callable(hmac_key):
            self._keys: HmacKeys = hmac_key
        else:
            if not hmac_key:
                raise ValueError("ALTCHA needs a non-empty HMAC key")
            fixed = (hmac_key,)
            self._keys = lambda: fixed
        self._store = store
        self.max_number = max_number
        self.expires_seconds = expires_seconds

    @staticmethod
    def random_key() -> str:
        """A per-process key for when none is configured (one instance only)."""
        return secrets.token_hex(32)

    def challenge(self) -> dict[str, Any]:
        """A fresh signed challenge, the body of ``GET /api/v1/auth/captcha``."""
        created = altcha_v1.create_challenge(
            algorithm=ALGORITHM,
            max_number=self.max_number,
            salt_length=12,
            hmac_key=self._signing_key(),
            salt="",
            number=None,
            expires=clock.now() + timedelta(seconds=self.expires_seconds),
            params=None,
        )
        body = cast(dict[str, Any], created.to_dict())
        # The ALTCHA widget reads "maxnumber"; the library spells it "maxNumber".
        body["maxnumber"] = created.max_number
        return body

    async def verify(self, payload: str, *, remote_ip: str | None = None) -> bool:
        """True once for a correct, unexpired solution; False for anything else. Never raises."""
        solution = _decode(payload)
        if solution is None:
            return False
        salt, number = solution["salt"], solution["number"]
        expires = _expires(salt)
        now = clock.now().timestamp()
        if expires is None or expires <= now or expires > now + self.expires_seconds + 60:
            return False
        signed_salt = salt if salt.endswith("&") else salt + "&"
        expected_challenge = altcha_v1.hash_hex(ALGORITHM, (signed_salt + str(number)).encode())
        challenge_ok = hmac.compare_digest(expected_challenge, solution["challenge"])
        # Every key in force is tried (no early exit), so the time does not tell which matched.
        signature_ok = False
        for key in self._keys():
            expected = altcha_v1.hmac_hex(ALGORITHM, expected_challenge.encode(), key)
            signature_ok |= hmac.compare_digest(expected, solution["signature"])
        if not (challenge_ok and signature_ok):
            return False
        marker = "captcha:altcha:" + hashlib.sha256(solution["signature"].encode()).hexdigest()
        return await self._store.claim(marker, float(expires), now)

    def _signing_key(self) -> HmacKey:
        keys = self._keys()
        if not keys or not keys[0]:
            raise ValueError("ALTCHA needs a non-empty HMAC key")
        return keys[0]


def _decode(payload: str) -> dict[str, Any] | None:
    if not isinstance(payload, str) or not payload or len(payload) > MAX_PAYLOAD_CHARS:
        return None
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("algorithm") != ALGORITHM:
        return None
    number = data.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        return None
    if not all(isinstance(data.get(k), str) for k in ("challenge", "salt", "signature")):
        return None
    if not all(data[k].isascii() for k in ("challenge", "salt", "signature")):
        return None
    return data


def _expires(salt: str) -> int | None:
    values = altcha_v1.extract_params(cast(altcha_v1.PayloadType, {"salt": salt})).get("expires")
    # Exactly one expiry: a salt with two could pass one check and be signed with the other.
    if not values or len(values) != 1:
        return None
    try:
        return int(values[0])
    except ValueError:
        return None
