"""Where secrets come from: one interface, four providers, a cache in front of remote ones.

Use :func:`aayu_accounts.crypto.secret_store.factory.build_secret_store` to get the store the
settings ask for.
"""

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretNotFound,
    SecretRefused,
    SecretStore,
    SecretStoreError,
    SecretStoreUnavailable,
    SecretVersion,
)

__all__ = [
    "Secret",
    "SecretNotFound",
    "SecretRefused",
    "SecretStore",
    "SecretStoreError",
    "SecretStoreUnavailable",
    "SecretVersion",
]
