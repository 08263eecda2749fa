"""Errors of the user-data API."""

from __future__ import annotations

from aayu_accounts.errors import AppError, NotFound


class DocumentNotFound(NotFound):
    """API.md: 404 ``not_found``."""


class DocumentTooLarge(AppError):
    status = 413
    code = "document_too_large"
    title = "Document too large"
