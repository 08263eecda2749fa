"""Signed checkpoints of the chain head, kept outside the database.

A hash chain alone cannot show that its tail was cut off, or that an intruder rewrote a stretch
and recomputed every later hash: nothing in the database is secret. A checkpoint is the head
(sequence, hash, time) signed with the audit checkpoint key and written to a directory the
database cannot reach (mount it from other storage, or sync it to an object store with
write-once retention). The verifier checks every checkpoint against the chain.

Files are ``checkpoint-<sequence>-<time>.json``, written atomically (temporary file, fsync,
rename), so a crash never leaves a half-written checkpoint; ``storage.py`` copies them to an
object store as well.

Signatures are Ed25519 under the keyring's ``audit-signing`` key (key id
``audit-signing:v<N>``): an auditor verifies with the public keys alone
(``aayu-accounts audit public-key``) and cannot forge. Checkpoints and archives written before
that were HMAC-SHA256 under the ``audit-checkpoint`` key (``audit-checkpoint:v<N>``); the
keyring still verifies them, a public-key verifier reports them as not checkable.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aayu_accounts.audit.canonical import JsonValue, canonical_bytes, format_time

CHECKPOINT_FORMAT = "aayu-audit-checkpoint"
CHECKPOINT_VERSION = 1


HMAC_PREFIX = "audit-checkpoint:v"  # before Ed25519: shared-secret MACs (verify only)
ED25519_PREFIX = "audit-signing:v"
PUBLIC_KEYS_FORMAT = "aayu-audit-public-keys"


def _version(key_id: str, prefix: str) -> int | None:
    if not key_id.startswith(prefix) or not key_id[len(prefix) :].isdigit():
        return None
    return int(key_id[len(prefix) :])


class CheckpointVerifier(Protocol):
    """Verifies checkpoint (and archive) signatures; ``key_id`` names the key version used."""

    def can_verify(self, key_id: str) -> bool:
        """False for a kind of key this verifier holds nothing for (then the result of
        :meth:`verify` means nothing and the caller reports the signature as unchecked)."""
        ...

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool: ...


class CheckpointSigner(CheckpointVerifier, Protocol):
    """Signs as well as verifies."""

    def sign(self, message: bytes) -> tuple[str, bytes]: ...


class KeyringCheckpointSigner:
    """The production signer: Ed25519 under the keyring's ``audit-signing`` key (versioned).

    Rotation (``aayu-accounts keys rotate audit-signing``) is free: new checkpoints use the
    newest active version, old ones verify with the version their ``key_id`` names for as long
    as it is not retired. HMAC checkpoints from before the switch verify with the
    ``audit-checkpoint`` key.
    """

    PREFIX = ED25519_PREFIX

    def sign(self, message: bytes) -> tuple[str, bytes]:
        from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring  # noqa: PLC0415

        version, signature = get_keyring().sign_asymmetric(KeyPurpose.AUDIT_SIGNING, message)
        return f"{ED25519_PREFIX}{version}", signature

    def can_verify(self, key_id: str) -> bool:
        return key_id.startswith((ED25519_PREFIX, HMAC_PREFIX))

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
        from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring  # noqa: PLC0415

        keyring = get_keyring()
        version = _version(key_id, ED25519_PREFIX)
        if version is not None:
            return keyring.verify_asymmetric(KeyPurpose.AUDIT_SIGNING, message, version, signature)
        version = _version(key_id, HMAC_PREFIX)
        if version is not None:
            return keyring.verify(KeyPurpose.AUDIT_CHECKPOINT, message, version, signature)
        return False

    def public_keys(self) -> list[PublicKey]:
        """Every loaded ``audit-signing`` version's public key, oldest first."""
        from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring  # noqa: PLC0415

        keyring = get_keyring()
        current = keyring.current(KeyPurpose.AUDIT_SIGNING).version
        return [
            PublicKey(
                f"{ED25519_PREFIX}{key.version}",
                keyring.public_key(KeyPurpose.AUDIT_SIGNING, key.version),
                key.activates_at,
                key.version == current,
            )
            for key in keyring.versions(KeyPurpose.AUDIT_SIGNING)
        ]


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes  # the 32-byte Ed25519 public key (RFC 8032)
    activates_at: datetime | None = None
    current: bool = False

    def pem(self) -> str:
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def public_keys_document(keys: list[PublicKey]) -> dict[str, JsonValue]:
    """The file an auditor keeps (``audit public-key --json``) and verifies with."""
    return {
        "format": PUBLIC_KEYS_FORMAT,
        "algorithm": "Ed25519",
        "keys": [
            {
                "key_id": key.key_id,
                "public_key": base64.b64encode(key.raw).decode(),
                "activates_at": format_time(key.activates_at) if key.activates_at else None,
                "current": key.current,
            }
            for key in keys
        ],
    }


class PublicKeyVerifier:
    """Verifies Ed25519 checkpoints and archives with public keys alone (no keyring, no
    database, no secret): what an auditor runs. It cannot sign."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = dict(keys)

    @classmethod
    def from_document(cls, text: str) -> PublicKeyVerifier:
        """Raises ``ValueError`` for anything but a public-keys document."""
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != PUBLIC_KEYS_FORMAT:
            raise ValueError("not an audit public-keys document")
        keys: dict[str, bytes] = {}
        for entry in document.get("keys", []):
            raw = base64.b64decode(str(entry["public_key"]), validate=True)
            if len(raw) != 32 or _version(str(entry["key_id"]), ED25519_PREFIX) is None:
                raise ValueError(f"bad public key entry {entry.get('key_id')!r}")
            keys[str(entry["key_id"])] = raw
        return cls(keys)

    def can_verify(self, key_id: str) -> bool:
        return key_id.startswith(ED25519_PREFIX)

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
        from aayu_accounts.crypto.keyring import verify_ed25519  # noqa: PLC0415

        public = self.keys.get(key_id)
        return public is not None and verify_ed25519(public, message, signature)


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    hash: str
    time: datetime
    key_id: str
    signature: bytes

    def document(self) -> dict[str, JsonValue]:
        return {
            **signed_payload(self.sequence, self.hash, self.time),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }


@dataclass(frozen=True)
class LoadedCheckpoint:
    name: str  # the file (object) name, with where it was read in ``location``
    checkpoint: Checkpoint | None  # None when the file could not be parsed
    valid_signature: bool
    checkable: bool = True  # False: signed with a kind of key the verifier does not hold
    location: str = ""


def signed_payload(sequence: int, head_hash: str, time: datetime) -> dict[str, JsonValue]:
    # The key id is not signed: it only selects the verifying key, and a relabelled
    # signature fails under any other key anyway.
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "sequence": sequence,
        "hash": head_hash,
        "time": format_time(time),
    }


def _message(sequence: int, head_hash: str, time: datetime) -> bytes:
    return canonical_bytes(signed_payload(sequence, head_hash, time))


def make_checkpoint(
    signer: CheckpointSigner, sequence: int, head_hash: str, time: datetime
) -> Checkpoint:
    key_id, signature = signer.sign(_message(sequence, head_hash, time))
    return Checkpoint(sequence, head_hash, time, key_id, signature)


def verify_checkpoint(signer: CheckpointVerifier, checkpoint: Checkpoint) -> bool:
    message = _message(checkpoint.sequence, checkpoint.hash, checkpoint.time)
    return signer.verify(checkpoint.key_id, message, checkpoint.signature)


def file_name(checkpoint: Checkpoint) -> str:
    return f"checkpoint-{checkpoint.sequence:015d}-{checkpoint.time:%Y%m%dT%H%M%S%fZ}.json"


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    return json.dumps(checkpoint.document(), sort_keys=True, indent=2).encode() + b"\n"


def write_checkpoint_file(directory: Path, checkpoint: Checkpoint) -> Path:
    return write_file_atomically(directory, file_name(checkpoint), checkpoint_bytes(checkpoint))


def write_file_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Temporary file, fsync, rename: a crash never leaves half a file under ``name``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def parse_checkpoint(text: str) -> Checkpoint:
    """Raises ``ValueError`` (or ``KeyError``/``TypeError``) for anything malformed."""
    document = json.loads(text)
    if document.get("format") != CHECKPOINT_FORMAT or document.get("version") != 1:
        raise ValueError("not an audit checkpoint (version 1)")
    return Checkpoint(
        sequence=int(document["sequence"]),
        hash=str(document["hash"]),
        time=datetime.fromisoformat(str(document["time"]).replace("Z", "+00:00")),
        key_id=str(document["key_id"]),
        signature=bytes.fromhex(str(document["signature"])),
    )


def iter_checkpoint_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(directory.glob("checkpoint-*.json"))


def is_checkpoint_name(name: str) -> bool:
    return name.startswith("checkpoint-") and name.endswith(".json")


def load_checkpoint(
    name: str, data: bytes, verifier: CheckpointVerifier, location: str = ""
) -> LoadedCheckpoint:
    try:
        checkpoint = parse_checkpoint(data.decode("utf-8"))
    except (ValueError, KeyError, TypeError):
        return LoadedCheckpoint(name, None, valid_signature=False, location=location)
    if not verifier.can_verify(checkpoint.key_id):
        return LoadedCheckpoint(name, checkpoint, False, checkable=False, location=location)
    valid = verify_checkpoint(verifier, checkpoint)
    return LoadedCheckpoint(name, checkpoint, valid, location=location)


def load_checkpoints(directory: Path, signer: CheckpointVerifier) -> list[LoadedCheckpoint]:
    return [
        load_checkpoint(path.name, path.read_bytes(), signer, str(directory))
        for path in iter_checkpoint_files(directory)
    ]


def latest_checkpoint(directory: Path, signer: CheckpointVerifier) -> Checkpoint | None:
    """The newest checkpoint with a valid signature (file names sort by sequence, then time)."""
    for path in sorted(iter_checkpoint_files(directory), reverse=True):
        loaded = load_checkpoint(path.name, path.read_bytes(), signer)
        if loaded.checkpoint is not None and loaded.valid_signature:
            return loaded.checkpoint
    return None


def latest_valid(loaded: list[LoadedCheckpoint]) -> Checkpoint | None:
    valid = [item.checkpoint for item in loaded if item.checkpoint and item.valid_signature]
    return max(valid, key=lambda c: (c.sequence, c.time)) if valid else None
