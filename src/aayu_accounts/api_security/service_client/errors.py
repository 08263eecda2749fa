"""Failures of service-client management (CLI and services)."""

from __future__ import annotations

from aayu_accounts.errors import AppError


class ClientNameTaken(AppError):
    status = 409
    code = "client_name_taken"
    title = "A service client with this name exists"


class ClientNotFound(AppError):
    status = 404
    code = "not_found"
    title = "No such service client"


class ClientDisabled(AppError):
    status = 409
    code = "client_disabled"
    title = "The service client is disabled"


class InvalidClientName(AppError):
    status = 422
    code = "validation_error"
    title = "Invalid service client name"
