"""The process-wide keyring: installed at start-up (app lifespan, CLI), read everywhere.

A global because ORM type hooks have no other way to reach it; it is swapped atomically
(a reference assignment) when a refresh loads new versions.
"""

from __future__ import annotations

from aayu_accounts.crypto.keyring.core import Keyring

_current: Keyring | None = None


class KeyringNotLoaded(RuntimeError):
    """Encryption was needed before the keyring was loaded (a start-up ordering bug)."""


def get_keyring() -> Keyring:
    if _current is None:
        raise KeyringNotLoaded("the keyring is not loaded; load it at start-up")
    return _current


def install_keyring(keyring: Keyring | None) -> Keyring | None:
    """Make ``keyring`` the process's keyring; returns the previous one (to restore)."""
    global _current  # the one process-wide keyring, deliberately swappable
    previous, _current = _current, keyring
    return previous


def keyring_loaded() -> bool:
    return _current is not None
