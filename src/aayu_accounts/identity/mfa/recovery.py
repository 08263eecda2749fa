"""Recovery codes: ten, shown once, stored as SHA-256 hashes, each usable once.

Each code has 16 characters from a 31-symbol alphabet without look-alikes (about 79 bits), so
a plain SHA-256 is safe to store (no offline guessing) and cheap to check against all ten.
Input is forgiving: case, spaces and hyphens are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

RECOVERY_CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1
_GROUPS, _GROUP_LENGTH = 4, 4


def generate_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Fresh codes like ``k7pq-3mxa-wz9d-hc2e``, to show the user exactly once."""
    codes: set[str] = set()
    while len(codes) < count:
        groups = (
            "".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LENGTH)) for _ in range(_GROUPS)
        )
        codes.add("-".join(groups))
    return sorted(codes)


def normalize_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.casefold() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    """What to store: SHA-256 hex of the normalized code."""
    return hashlib.sha256(normalize_recovery_code(code).encode("utf-8")).hexdigest()


def consume_recovery_code(code: str, stored_hashes: Sequence[str]) -> list[str] | None:
    """The hashes to keep after using ``code`` (the matched one removed), or None if no match.

    The caller saves the returned list in the same transaction that signs the user in, so the
    code cannot be used twice. Every stored hash is compared, match or not.
    """
    if not isinstance(code, str) or len(normalize_recovery_code(code)) != _GROUPS * _GROUP_LENGTH:
        return None
    candidate = hash_recovery_code(code)
    matched: int | None = None
    for index, stored in enumerate(stored_hashes):
        if hmac.compare_digest(candidate, stored) and matched is None:
            matched = index
    if matched is None:
        return None
    return [h for index, h in enumerate(stored_hashes) if index != matched]
