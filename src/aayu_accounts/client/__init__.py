"""The Python SDK the scribe backend uses: signed calls to ``/api/v1/service/*``.

Depends only on ``kit`` (the clock) and well-kept libraries (httpx, tenacity, pybreaker).
See ``docs/api.md`` for a walk-through.
"""

from aayu_accounts.client.client import AccountsClient, AsyncAccountsClient
from aayu_accounts.client.core import ClientOptions, ServerError, TransportFailure
from aayu_accounts.client.errors import (
    AccountsError,
    ApiError,
    CircuitOpenError,
    RateLimitedError,
    UnavailableError,
)
from aayu_accounts.client.models import Entitlement, Introspection, UsageReceipt

__all__ = [
    "AccountsClient",
    "AccountsError",
    "ApiError",
    "AsyncAccountsClient",
    "CircuitOpenError",
    "ClientOptions",
    "Entitlement",
    "Introspection",
    "RateLimitedError",
    "ServerError",
    "TransportFailure",
    "UnavailableError",
    "UsageReceipt",
]
