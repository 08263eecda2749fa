"""Versioned keys per purpose. See :mod:`.core` for the operations and rotation rules.

Imports only in-memory parts: the database-backed loader (:mod:`.repository`) imports models,
and models import :mod:`aayu_accounts.crypto.field_encryption`, which imports this package.
"""

from aayu_accounts.crypto.keyring.core import (
    BLIND_INDEX_BYTES,
    Keyring,
    KeyVersion,
    UnknownKeyVersion,
    WrongKeyUse,
    ciphertext_version,
    verify_ed25519,
)
from aayu_accounts.crypto.keyring.process import (
    KeyringNotLoaded,
    get_keyring,
    install_keyring,
    keyring_loaded,
)
from aayu_accounts.crypto.keyring.purposes import MASTER_KEY_SECRET, KeyPurpose, KeyUse

__all__ = [
    "BLIND_INDEX_BYTES",
    "MASTER_KEY_SECRET",
    "KeyPurpose",
    "KeyUse",
    "KeyVersion",
    "Keyring",
    "KeyringNotLoaded",
    "UnknownKeyVersion",
    "WrongKeyUse",
    "ciphertext_version",
    "get_keyring",
    "install_keyring",
    "keyring_loaded",
    "verify_ed25519",
]
