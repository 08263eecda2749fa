"""The in-memory keyring: versioned keys per purpose, and the operations over them.

Rotation never replaces a key in place. A new version is *published* first (every instance
loads it and can verify/decrypt with it) and *activates* later (from then on it signs and
encrypts), so an instance that has not refreshed yet still understands what others produce.
Older versions keep verifying and decrypting until they are retired.

Everything here is synchronous and does no I/O: ORM type hooks and request handlers call it on
hot paths. Loading and refreshing live in :mod:`.repository` and :mod:`.process`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring.purposes import KeyPurpose, KeyUse
from aayu_accounts.kit import clock

# Ciphertext layout: format byte, key version (uint32 big-endian), then nonce||ct||tag.
CIPHERTEXT_FORMAT = 0x01
_VERSION = struct.Struct(">I")
HEADER_BYTES = 1 + _VERSION.size
MIN_CIPHERTEXT_BYTES = HEADER_BYTES + primitives.NONCE_BYTES + primitives.TAG_BYTES
# Blind index layout: key version (uint32 big-endian), then the HMAC.
BLIND_INDEX_BYTES = _VERSION.size + primitives.MAC_BYTES


class UnknownKeyVersion(Exception):
    """No loaded key of this purpose and version (never created, or retired)."""

    def __init__(self, purpose: KeyPurpose, version: int) -> None:
        self.purpose = purpose
        self.version = version
        super().__init__(f"no {purpose.value} key version {version}")


class WrongKeyUse(Exception):
    """A key purpose used for an operation it is not meant for (e.g. signing with DATA)."""


@dataclass(frozen=True)
class KeyVersion:
    purpose: KeyPurpose
    version: int
    secret: bytes = field(repr=False)
    activates_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.activates_at <= now


def ciphertext_header(version: int) -> bytes:
    return bytes([CIPHERTEXT_FORMAT]) + _VERSION.pack(version)


def ciphertext_version(ciphertext: bytes) -> int:
    """The key version a ciphertext was made with; ``ValueError`` if it is not one of ours."""
    if len(ciphertext) < MIN_CIPHERTEXT_BYTES or ciphertext[0] != CIPHERTEXT_FORMAT:
        raise ValueError("not an Aayu ciphertext")
    version: int = _VERSION.unpack_from(ciphertext, 1)[0]
    return version


def blind_index_prefix(version: int) -> bytes:
    return _VERSION.pack(version)


def blind_index_version(index: bytes) -> int:
    if len(index) != BLIND_INDEX_BYTES:
        raise ValueError("not an Aayu blind index")
    version: int = _VERSION.unpack_from(index, 0)[0]
    return version


def _aad(purpose: KeyPurpose, version: int, associated_data: bytes) -> bytes:
    # The header is authenticated too, so a ciphertext cannot be relabelled with another
    # version or moved to another purpose.
    return (
        b"aayu|" + purpose.value.encode() + b"|" + _VERSION.pack(version) + b"|" + associated_data
    )


class Keyring:
    """Versioned keys for every :class:`KeyPurpose`. Immutable: a refresh builds a new one."""

    def __init__(self, versions: Iterable[KeyVersion]) -> None:
        by_purpose: dict[KeyPurpose, dict[int, KeyVersion]] = {}
        for key in versions:
            by_purpose.setdefault(key.purpose, {})[key.version] = key
        self._keys = by_purpose

    @classmethod
    def generate(cls, purposes: Iterable[KeyPurpose] = tuple(KeyPurpose)) -> Keyring:
        """A keyring of fresh version-1 keys that lives only in memory (tests, tools)."""
        start = clock.now()
        return cls(KeyVersion(p, 1, primitives.random_key(), start) for p in purposes)

    def purposes(self) -> list[KeyPurpose]:
        return sorted(self._keys, key=lambda p: p.value)

    def versions(self, purpose: KeyPurpose) -> list[KeyVersion]:
        """Loaded versions of ``purpose``, oldest first."""
        return [self._keys[purpose][v] for v in sorted(self._keys.get(purpose, {}))]

    def all_versions(self) -> list[KeyVersion]:
        return [key for purpose in self.purposes() for key in self.versions(purpose)]

    def get(self, purpose: KeyPurpose, version: int) -> KeyVersion:
        try:
            return self._keys[purpose][version]
        except KeyError:
            raise UnknownKeyVersion(purpose, version) from None

    def current(self, purpose: KeyPurpose) -> KeyVersion:
        """The version that signs/encrypts now: the newest one already active."""
        versions = self.versions(purpose)
        if not versions:
            raise UnknownKeyVersion(purpose, 0)
        now = clock.now()
        active = [key for key in versions if key.is_active(now)]
        # Before any version is active (cannot happen after bootstrap) the oldest serves.
        return active[-1] if active else versions[0]

    # -- signing ---------------------------------------------------------------------------

    def sign(self, purpose: KeyPurpose, data: bytes) -> tuple[int, bytes]:
        """``(version, HMAC-SHA256)`` under the current key of a signing purpose."""
        _require(purpose, KeyUse.SIGN)
        key = self.current(purpose)
        return key.version, primitives.hmac_sha256(key.secret, data)

    def verify(self, purpose: KeyPurpose, data: bytes, version: int, mac: bytes) -> bool:
        """True when ``mac`` is ``data``'s HMAC under that (loaded, unretired) version."""
        _require(purpose, KeyUse.SIGN)
        try:
            key = self.get(purpose, version)
        except UnknownKeyVersion:
            return False
        return primitives.constant_time_equal(primitives.hmac_sha256(key.secret, data), mac)

    # -- public-key signatures -------------------------------------------------------------
    # An asymmetric purpose's secret is a 32-byte Ed25519 seed (RFC 8032 §5.1.5), made,
    # wrapped, stored and rotated like every other key version.

    def sign_asymmetric(self, purpose: KeyPurpose, data: bytes) -> tuple[int, bytes]:
        """``(version, Ed25519 signature)`` under the current key of an asymmetric purpose."""
        _require(purpose, KeyUse.ASYMMETRIC_SIGN)
        key = self.current(purpose)
        return key.version, Ed25519PrivateKey.from_private_bytes(key.secret).sign(data)

    def public_key(self, purpose: KeyPurpose, version: int) -> bytes:
        """The raw 32-byte Ed25519 public key of a loaded version (``UnknownKeyVersion``)."""
        _require(purpose, KeyUse.ASYMMETRIC_SIGN)
        private = Ed25519PrivateKey.from_private_bytes(self.get(purpose, version).secret)
        return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def verify_asymmetric(
        self, purpose: KeyPurpose, data: bytes, version: int, signature: bytes
    ) -> bool:
        """True when ``signature`` is ``data``'s Ed25519 signature under that loaded version."""
        try:
            public = self.public_key(purpose, version)
        except UnknownKeyVersion:
            return False
        return verify_ed25519(public, data, signature)

    # -- encryption ------------------------------------------------------------------------

    def encrypt(self, purpose: KeyPurpose, plaintext: bytes, associated_data: bytes) -> bytes:
        """AES-256-GCM under the current key; the version travels in the ciphertext header."""
        _require(purpose, KeyUse.ENCRYPT)
        key = self.current(purpose)
        sealed = primitives.aead_seal(
            key.secret, plaintext, _aad(purpose, key.version, associated_data)
        )
        return ciphertext_header(key.version) + sealed

    def decrypt(self, purpose: KeyPurpose, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Raises :class:`UnknownKeyVersion` or :class:`~.primitives.DecryptionFailed`."""
        _require(purpose, KeyUse.ENCRYPT)
        try:
            version = ciphertext_version(ciphertext)
        except ValueError:
            raise primitives.DecryptionFailed from None
        key = self.get(purpose, version)
        return primitives.aead_open(
            key.secret, ciphertext[HEADER_BYTES:], _aad(purpose, version, associated_data)
        )

    # -- blind indexes ---------------------------------------------------------------------

    def blind_index(self, value: str, kind: str) -> bytes:
        """The index of an already-normalized ``value`` under the current blind-index key.

        ``kind`` separates domains ("email", "phone"), so equal strings of different kinds
        do not share an index.
        """
        return self._index(self.current(KeyPurpose.BLIND_INDEX), value, kind)

    def blind_index_candidates(self, value: str, kind: str) -> list[bytes]:
        """The index under every loaded version, newest first: look up with ``IN (...)``
        while a rotation's re-indexing is still running."""
        return [
            self._index(key, value, kind) for key in reversed(self.versions(KeyPurpose.BLIND_INDEX))
        ]

    @staticmethod
    def _index(key: KeyVersion, value: str, kind: str) -> bytes:
        message = kind.encode() + b"\x00" + value.encode("utf-8")
        return blind_index_prefix(key.version) + primitives.hmac_sha256(key.secret, message)


def verify_ed25519(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Ed25519 verification with a raw public key alone (what an auditor holds)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _require(purpose: KeyPurpose, use: KeyUse) -> None:
    if purpose.use is not use:
        raise WrongKeyUse(f"the {purpose.value} key is for {purpose.use.value}, not {use.value}")
