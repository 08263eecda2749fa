"""The audit area's expected failures."""

from __future__ import annotations

from aayu_accounts.errors import AppError


class ExportLimitReached(AppError):
    """The per-user daily export limit (the strategy's ``data.exports`` threshold)."""

    status = 429
    code = "export_limit_reached"
    title = "Export limit reached"

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"At most {limit} audit exports per user per day; try again tomorrow (UTC).",
            headers={"Retry-After": str(max(1, retry_after))},
        )


class InvalidCursor(AppError):
    status = 400
    code = "invalid_cursor"
    title = "Invalid cursor"


class InvalidTimeRange(AppError):
    status = 422
    code = "validation_error"
    title = "Validation error"
