"""The secret store interface every provider implements.

Values are text (Vault and Azure store strings); keys are stored as base64url
(:func:`aayu_accounts.crypto.primitives.encode_key`). A value is never logged, never put in an
exception message and never shown by ``repr``.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime

# Names every provider accepts: Azure allows only letters, digits and dashes.
_VALID_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")


class SecretStoreError(Exception):
    """Base of the secret store's failures. Messages carry names, never values.

    ``status_code`` follows HTTP: a 4xx is an answer (not retried, not counted by the circuit
    breaker in :mod:`aayu_accounts.kit.resilience`), a 5xx or none is an outage.
    """

    status_code: int | None = None

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class SecretNotFound(SecretStoreError):
    status_code = 404

    def __init__(self, name: str, version: str | None = None) -> None:
        self.name = name
        self.version = version
        suffix = f" version {version}" if version else ""
        super().__init__(f"secret {name!r}{suffix} not found")


class SecretStoreUnavailable(SecretStoreError):
    """The provider could not be reached or answered with a server error."""

    status_code = 503


class SecretRefused(SecretStoreError):
    """The provider's answer is unusable here (e.g. a generated secret in production)."""

    status_code = 422


@dataclass(frozen=True)
class Secret:
    name: str
    version: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretVersion:
    name: str
    version: str
    created_at: datetime | None
    enabled: bool = True


def check_name(name: str) -> str:
    if not _VALID_NAME.match(name):
        raise ValueError("secret names are 1-127 letters, digits or dashes")
    return name


class SecretStore(abc.ABC):
    """``get`` the newest (or a given) version, ``set`` a new version, ``list_versions``."""

    #: Name used in logs and metrics labels.
    provider: str = "abstract"
    #: Remote providers get the timeout/retry/breaker wrapper and the stale-serving cache.
    remote: bool = False

    @abc.abstractmethod
    async def get(self, name: str, version: str | None = None) -> Secret:
        """The newest enabled version, or ``version``. Raises :class:`SecretNotFound`."""

    @abc.abstractmethod
    async def set(self, name: str, value: str) -> Secret:
        """Store ``value`` as a new version of ``name`` and return it."""

    @abc.abstractmethod
    async def list_versions(self, name: str) -> list[SecretVersion]:
        """Versions of ``name``, oldest first. Raises :class:`SecretNotFound`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""
