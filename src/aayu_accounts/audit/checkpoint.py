"""Signed checkpoints of the chain head, kept outside the database.

A hash chain alone cannot show that its tail was cut off, or that an intruder rewrote a stretch
and recomputed every later hash: nothing in the database is secret. A checkpoint is the head
(sequence, hash, time) signed with the audit checkpoint key and written to a directory the
database cannot reach (mount it from other storage, or sync it to an object store with
write-once retention). The verifier checks every checkpoint against the chain.

Files are ``checkpoint-<sequence>-<time>.json``, written atomically (temporary file, fsync,
rename), so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aayu_accounts.audit.canonical import JsonValue, canonical_bytes, format_time

CHECKPOINT_FORMAT = "aayu-audit-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointSigner(Protocol):
    """Signs and verifies checkpoint bytes; ``key_id`` names the key version used."""

    def sign(self, message: bytes) -> tuple[str, bytes]: ...

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool: ...


class KeyringCheckpointSigner:
    """The production signer: the keyring's ``audit-checkpoint`` key (HMAC-SHA256, versioned).

    Rotation is free: new checkpoints use the newest active version, old ones verify with the
    version named in their ``key_id`` for as long as it is not retired.
    """

    PREFIX = "audit-checkpoint:v"

    def sign(self, message: bytes) -> tuple[str, bytes]:
        from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring  # noqa: PLC0415

        version, mac = get_keyring().sign(KeyPurpose.AUDIT_CHECKPOINT, message)
        return f"{self.PREFIX}{version}", mac

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
        from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring  # noqa: PLC0415

        if not key_id.startswith(self.PREFIX) or not key_id[len(self.PREFIX) :].isdigit():
            return False
        version = int(key_id[len(self.PREFIX) :])
        return get_keyring().verify(KeyPurpose.AUDIT_CHECKPOINT, message, version, signature)


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
    path: Path
    checkpoint: Checkpoint | None  # None when the file could not be parsed
    valid_signature: bool


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


def verify_checkpoint(signer: CheckpointSigner, checkpoint: Checkpoint) -> bool:
    message = _message(checkpoint.sequence, checkpoint.hash, checkpoint.time)
    return signer.verify(checkpoint.key_id, message, checkpoint.signature)


def file_name(checkpoint: Checkpoint) -> str:
    return f"checkpoint-{checkpoint.sequence:015d}-{checkpoint.time:%Y%m%dT%H%M%S%fZ}.json"


def write_checkpoint_file(directory: Path, checkpoint: Checkpoint) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / file_name(checkpoint)
    data = json.dumps(checkpoint.document(), sort_keys=True, indent=2).encode() + b"\n"
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


def load_checkpoints(directory: Path, signer: CheckpointSigner) -> list[LoadedCheckpoint]:
    loaded: list[LoadedCheckpoint] = []
    for path in iter_checkpoint_files(directory):
        try:
            checkpoint = parse_checkpoint(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError):
            loaded.append(LoadedCheckpoint(path, None, valid_signature=False))
            continue
        loaded.append(LoadedCheckpoint(path, checkpoint, verify_checkpoint(signer, checkpoint)))
    return loaded


def latest_checkpoint(directory: Path, signer: CheckpointSigner) -> Checkpoint | None:
    """The newest checkpoint with a valid signature (file names sort by sequence, then time)."""
    for path in sorted(iter_checkpoint_files(directory), reverse=True):
        try:
            checkpoint = parse_checkpoint(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError):
            continue
        if verify_checkpoint(signer, checkpoint):
            return checkpoint
    return None


def latest_valid(loaded: list[LoadedCheckpoint]) -> Checkpoint | None:
    valid = [item.checkpoint for item in loaded if item.checkpoint and item.valid_signature]
    return max(valid, key=lambda c: (c.sequence, c.time)) if valid else None
