"""Errors of the flag admin service."""

from __future__ import annotations

from aayu_accounts.errors import AppError, NotFound


class FlagNotFound(NotFound):
    code = "flag_not_found"
    title = "Flag not found"


class FlagDependencyInvalid(AppError):
    status = 422
    code = "flag_dependency_invalid"
    title = "Flag dependency invalid"
