"""The v2.5 credential list (``AAYU_LEGACY_AUTH_FILE``), as v2.5 hard-coded it.

JSON ``{"users": [{"username", "password", "email"?, "full_name"?}]}`` with plaintext
passwords: that is what v2.5 shipped, and this module only reads it. Comparison is constant
time and the same amount of work for unknown users, so neither timing nor errors tell
whether a username exists. The file is re-read when its modification time changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

# Compared against when the identifier is unknown, so that path costs the same.
_ABSENT = hashlib.sha256(b"aayu-legacy-absent-user").digest()


def legacy_subject(username: str) -> str:
    """The opaque, stable name of a v2.5 user in every store, log and bucket.

    A hash rather than the username, so documents, links and metrics never carry the name.
    """
    digest = hashlib.sha256(b"aayu-legacy-subject:" + username.strip().lower().encode())
    return "lg_" + digest.hexdigest()[:40]


@dataclass(frozen=True)
class LegacyUser:
    username: str
    email: str | None
    full_name: str | None
    # Kept out of repr so a logged LegacyUser never shows the password (or its digest).
    password_digest: bytes = field(repr=False)

    @property
    def subject(self) -> str:
        return legacy_subject(self.username)


class LegacyCredentialsInvalid(ValueError):
    """The credential file is not the v2.5 format (the message names no value from it)."""


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def parse(raw: str) -> list[LegacyUser]:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LegacyCredentialsInvalid("the legacy credential file is not JSON") from exc
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, list):
        raise LegacyCredentialsInvalid('the legacy credential file has no "users" list')
    parsed: list[LegacyUser] = []
    for position, entry in enumerate(users):
        if not isinstance(entry, dict):
            raise LegacyCredentialsInvalid(f"entry {position} is not an object")
        username, password = entry.get("username"), entry.get("password")
        if not isinstance(username, str) or not username.strip():
            raise LegacyCredentialsInvalid(f"entry {position} has no username")
        if not isinstance(password, str) or not password:
            raise LegacyCredentialsInvalid(f"entry {position} has no password")
        email, full_name = entry.get("email"), entry.get("full_name")
        parsed.append(
            LegacyUser(
                username=username.strip(),
                email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
                full_name=full_name if isinstance(full_name, str) else None,
                password_digest=_digest(password),
            )
        )
    return parsed


class LegacyCredentials:
    """Lookup and verification against the credential list; thread-safe, reloads on change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._by_name: dict[str, LegacyUser] = {}
        self._by_email: dict[str, LegacyUser] = {}

    @classmethod
    def from_users(cls, users: list[LegacyUser]) -> LegacyCredentials:
        store = cls(None)
        store._index(users)
        return store

    def _index(self, users: list[LegacyUser]) -> None:
        self._by_name = {u.username.lower(): u for u in users}
        self._by_email = {u.email: u for u in users if u.email}

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            with self._lock:
                self._by_name, self._by_email, self._mtime = {}, {}, None
            return
        if mtime == self._mtime:
            return
        users = parse(self.path.read_text(encoding="utf-8"))
        with self._lock:
            self._index(users)
            self._mtime = mtime

    def users(self) -> list[LegacyUser]:
        self._refresh()
        return sorted(self._by_name.values(), key=lambda u: u.username.lower())

    def find(self, identifier: str) -> LegacyUser | None:
        """The user whose username or email is ``identifier`` (case-insensitive)."""
        self._refresh()
        key = identifier.strip().lower()
        return self._by_name.get(key) or self._by_email.get(key)

    def by_subject(self, subject: str) -> LegacyUser | None:
        self._refresh()
        for user in self._by_name.values():
            if user.subject == subject:
                return user
        return None

    def verify(self, identifier: str, password: str) -> LegacyUser | None:
        """The user if ``password`` is theirs, else None; same work either way."""
        user = self.find(identifier)
        expected = user.password_digest if user is not None else _ABSENT
        matches = hmac.compare_digest(_digest(password), expected)
        return user if matches and user is not None else None
