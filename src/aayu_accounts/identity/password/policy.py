"""The password policy of NIST SP 800-63B 5.1.1.2 and OWASP ASVS level 2.

Length is what matters: at least ``password_min_length`` (12 by default, never below 8) and at
most 128 characters after NFKC normalization, any Unicode, never truncated, no composition rules
("one digit, one symbol") because they push people towards ``Password1!``. Refused instead:
the 30,000 most common passwords (the ranked list zxcvbn ships), passwords on an offline breach
list, passwords built from the user's own email, name or clinic or from the product's name,
and anything zxcvbn scores below ``password_min_strength``.

Every reason is reported at once, with a stable code the API returns and the console translates.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from aayu_accounts.config import Settings
from aayu_accounts.identity.password.breached import BreachedPasswords
from aayu_accounts.identity.password.hasher import normalize_password

MAX_LENGTH = 128
PRODUCT_NAMES = ("aayu",)
# Parts of a name this short match too much ordinary text to be refused on their own.
_MIN_NAME_PART = 4
# Words common to clinic names: refusing them would refuse half the dictionary, not the clinic.
_GENERIC_ORG_WORDS = frozenset(
    {
        "clinic",
        "clinics",
        "medical",
        "health",
        "healthcare",
        "family",
        "center",
        "centre",
        "practice",
        "hospital",
        "group",
        "care",
        "associates",
        "partners",
        "the",
        "and",
    }
)
# zxcvbn keeps its per-call user inputs in a module-level dictionary: serialize calls.
_zxcvbn_lock = threading.Lock()


class ViolationCode(StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    COMMON_PASSWORD = "common_password"  # noqa: S105 - a reason code, not a password
    BREACHED_PASSWORD = "breached_password"  # noqa: S105 - a reason code
    CONTAINS_EMAIL = "contains_email"
    CONTAINS_NAME = "contains_name"
    CONTAINS_ORGANIZATION_NAME = "contains_organization_name"
    CONTAINS_PRODUCT_NAME = "contains_product_name"
    TOO_WEAK = "too_weak"


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    code: ViolationCode
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """zxcvbn's ranked list of the 30,000 most common passwords (lower-case)."""
    return frozenset(FREQUENCY_LISTS["passwords"])


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _compact(text: str) -> str:
    """Folded, letters and digits only: ``priya.sharma`` and ``Priya Sharma`` both match."""
    return "".join(ch for ch in _fold(text) if ch.isalnum())


def _contains(password: str, needle: str) -> bool:
    folded, compact = _fold(needle), _compact(needle)
    return (len(folded) >= 3 and folded in _fold(password)) or (
        len(compact) >= 3 and compact in _compact(password)
    )


class PasswordPolicy:
    def __init__(
        self,
        *,
        min_length: int = 12,
        min_strength: int = 3,
        breached: BreachedPasswords | None = None,
    ) -> None:
        if min_length < 8:
            raise ValueError("NIST SP 800-63B: passwords of at least 8 characters")
        self.min_length = min_length
        self.min_strength = min_strength
        self._breached = breached

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordPolicy:
        breached = (
            BreachedPasswords(settings.breached_passwords_file)
            if settings.breached_passwords_file is not None
            else None
        )
        return cls(
            min_length=settings.password_min_length,
            min_strength=settings.password_min_strength,
            breached=breached,
        )

    async def acheck(
        self,
        password: str,
        *,
        email: str | None = None,
        full_name: str | None = None,
        org_name: str | None = None,
    ) -> list[PolicyViolation]:
        """:meth:`check` in a worker thread: zxcvbn takes milliseconds on long inputs."""
        return await asyncio.to_thread(
            self.check, password, email=email, full_name=full_name, org_name=org_name
        )

    def check(
        self,
        password: str,
        *,
        email: str | None = None,
        full_name: str | None = None,
        org_name: str | None = None,
    ) -> list[PolicyViolation]:
        """Every reason ``password`` is refused; an empty list means it is acceptable."""
        normalized = normalize_password(password)
        length = len(normalized)  # code points, as NIST counts characters
        violations: list[PolicyViolation] = []
        if length < self.min_length:
            violations.append(
                PolicyViolation(
                    ViolationCode.TOO_SHORT,
                    f"Use at least {self.min_length} characters.",
                )
            )
        if length > MAX_LENGTH:
            # Refused, never truncated; and not scored (zxcvbn is slow on very long input).
            violations.append(
                PolicyViolation(ViolationCode.TOO_LONG, f"Use at most {MAX_LENGTH} characters.")
            )
            return violations
        if _fold(normalized) in common_passwords():
            violations.append(
                PolicyViolation(
                    ViolationCode.COMMON_PASSWORD,
                    "This is one of the most common passwords; choose another.",
                )
            )
        if self._breached is not None and (
            self._breached.contains(password) or self._breached.contains(normalized)
        ):
            violations.append(
                PolicyViolation(
                    ViolationCode.BREACHED_PASSWORD,
                    "This password appears in a known data breach; choose another.",
                )
            )
        local_part = email.rsplit("@", 1)[0] if email else ""
        if local_part and _contains(normalized, local_part):
            violations.append(
                PolicyViolation(
                    ViolationCode.CONTAINS_EMAIL, "Do not use your email address in it."
                )
            )
        if full_name and self._contains_any(normalized, full_name, skip=frozenset()):
            violations.append(
                PolicyViolation(ViolationCode.CONTAINS_NAME, "Do not use your name in it.")
            )
        if org_name and self._contains_any(normalized, org_name, skip=_GENERIC_ORG_WORDS):
            violations.append(
                PolicyViolation(
                    ViolationCode.CONTAINS_ORGANIZATION_NAME,
                    "Do not use your clinic's name in it.",
                )
            )
        if any(_contains(normalized, product) for product in PRODUCT_NAMES):
            violations.append(
                PolicyViolation(
                    ViolationCode.CONTAINS_PRODUCT_NAME, "Do not use the product's name in it."
                )
            )
        hints = [h for h in (email, local_part, full_name, org_name, *PRODUCT_NAMES) if h]
        if self._strength(normalized, hints) < self.min_strength:
            violations.append(
                PolicyViolation(
                    ViolationCode.TOO_WEAK,
                    "This password is too easy to guess; a longer phrase of unrelated words "
                    "is stronger.",
                )
            )
        return violations

    @staticmethod
    def _contains_any(password: str, name: str, *, skip: frozenset[str]) -> bool:
        if _contains(password, name):
            return True
        parts = [p for p in _fold(name).replace("-", " ").split() if p not in skip]
        return any(
            _contains(password, part) for part in parts if len(_compact(part)) >= _MIN_NAME_PART
        )

    @staticmethod
    def _strength(password: str, hints: list[str]) -> int:
        with _zxcvbn_lock:
            result = zxcvbn(password, user_inputs=hints, max_length=MAX_LENGTH)
        score: int = result["score"]
        return score
