"""What the SDK raises. Branch on the class or on ``ApiError.code``, never on messages."""

from __future__ import annotations

from typing import Any


class AccountsError(Exception):
    """Base of every SDK error."""


class ApiError(AccountsError):
    """The service answered with a problem (RFC 9457): ``status`` and its stable ``code``."""

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any]) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem
        super().__init__(f"{status} {code}: {detail}")


class RateLimitedError(ApiError):
    """429: wait ``retry_after`` seconds. Not retried by the SDK (never retry a 4xx)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        problem: dict[str, Any],
        retry_after: float | None,
    ) -> None:
        super().__init__(status, code, detail, problem)
        self.retry_after = retry_after


class UnavailableError(AccountsError):
    """The service could not be reached or kept failing (5xx, timeouts) after the retries."""


class CircuitOpenError(UnavailableError):
    """Failing fast: recent calls failed, so the client does not try again until the
    breaker's reset timeout has passed."""
