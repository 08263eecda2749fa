"""Ed25519 signatures of checkpoints and archives: verified with the public key alone.

With HMAC anyone able to verify could forge; with Ed25519 an auditor holds only public keys.
Older HMAC checkpoints keep verifying with the keyring; rotated signing keys keep verifying
what they signed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from aayu_accounts.audit.archive import archive_expired, verify_archive
from aayu_accounts.audit.chain import GENESIS_HASH
from aayu_accounts.audit.checkpoint import (
    HMAC_PREFIX,
    Checkpoint,
    KeyringCheckpointSigner,
    PublicKeyVerifier,
    load_checkpoints,
    make_checkpoint,
    public_keys_document,
    verify_checkpoint,
    write_checkpoint_file,
)
from aayu_accounts.audit.tasks import write_checkpoint
from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, KeyVersion, install_keyring
from aayu_accounts.crypto.keyring.core import WrongKeyUse
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock
from tests.audit.helpers import seed, verify
from tests.fixtures.database import make_settings


class LegacyHmacSigner(KeyringCheckpointSigner):
    """How checkpoints were signed before Ed25519 (HMAC under ``audit-checkpoint``)."""

    def sign(self, message: bytes) -> tuple[str, bytes]:
        from aayu_accounts.crypto.keyring import get_keyring

        version, mac = get_keyring().sign(KeyPurpose.AUDIT_CHECKPOINT, message)
        return f"{HMAC_PREFIX}{version}", mac


def _auditor() -> PublicKeyVerifier:
    """What an auditor has: the published public keys, as a file's text."""
    document = public_keys_document(KeyringCheckpointSigner().public_keys())
    return PublicKeyVerifier.from_document(json.dumps(document))


def _checkpoint(signer: KeyringCheckpointSigner, sequence: int = 3) -> Checkpoint:
    return make_checkpoint(signer, sequence, "ab" * 32, clock.now())


def test_checkpoints_verify_with_the_public_key_alone() -> None:
    signer = KeyringCheckpointSigner()
    checkpoint = _checkpoint(signer)
    assert checkpoint.key_id == "audit-signing:v1"
    assert len(checkpoint.signature) == 64  # Ed25519 (RFC 8032)
    auditor = _auditor()
    previous = install_keyring(None)  # no keyring, no secret: only the public keys
    try:
        assert verify_checkpoint(auditor, checkpoint)
        assert not verify_checkpoint(auditor, replace(checkpoint, sequence=4))
        assert not verify_checkpoint(auditor, replace(checkpoint, key_id="audit-signing:v9"))
        # An HMAC label on an Ed25519 signature: the auditor holds no HMAC key at all.
        relabelled = replace(checkpoint, key_id=f"{HMAC_PREFIX}1")
        assert not auditor.can_verify(relabelled.key_id)
    finally:
        install_keyring(previous)
    # Another deployment's key (an intruder's) does not verify it.
    other = install_keyring(Keyring.generate())
    try:
        assert not verify_checkpoint(_auditor(), checkpoint)
    finally:
        install_keyring(other)


def test_the_signing_key_is_for_public_key_signatures_only() -> None:
    from aayu_accounts.crypto.keyring import get_keyring

    keyring = get_keyring()
    with pytest.raises(WrongKeyUse):
        keyring.sign(KeyPurpose.AUDIT_SIGNING, b"message")
    with pytest.raises(WrongKeyUse):
        keyring.sign_asymmetric(KeyPurpose.AUDIT_CHECKPOINT, b"message")


def test_a_public_keys_file_must_be_one() -> None:
    for text in ('{"format": "x"}', '{"format": "aayu-audit-public-keys", "keys": [{}]}', "[]"):
        with pytest.raises((ValueError, KeyError)):
            PublicKeyVerifier.from_document(text)
    bad_length = {
        "format": "aayu-audit-public-keys",
        "keys": [{"key_id": "audit-signing:v1", "public_key": "AAAA"}],
    }
    with pytest.raises(ValueError, match="bad public key"):
        PublicKeyVerifier.from_document(json.dumps(bad_length))


def test_a_rotated_key_signs_new_checkpoints_and_old_ones_still_verify(
    frozen_clock: FrozenClock,
) -> None:
    now = frozen_clock.now()
    first = KeyVersion(KeyPurpose.AUDIT_SIGNING, 1, primitives.random_key(), now)
    second = KeyVersion(
        KeyPurpose.AUDIT_SIGNING, 2, primitives.random_key(), now + timedelta(hours=1)
    )
    others = [key for key in Keyring.generate().all_versions() if key.purpose is not first.purpose]
    previous = install_keyring(Keyring([*others, first, second]))
    try:
        signer = KeyringCheckpointSigner()
        old = _checkpoint(signer)
        assert old.key_id == "audit-signing:v1"  # v2 is published, not active yet
        listed = signer.public_keys()
        assert [(key.key_id, key.current) for key in listed] == [
            ("audit-signing:v1", True),
            ("audit-signing:v2", False),
        ]
        assert listed[0].pem().startswith("-----BEGIN PUBLIC KEY-----")
        frozen_clock.advance(timedelta(hours=2))
        new = _checkpoint(signer, 4)
        assert new.key_id == "audit-signing:v2"
        auditor = _auditor()
        assert verify_checkpoint(auditor, old)
        assert verify_checkpoint(auditor, new)
        assert verify_checkpoint(signer, old)
    finally:
        install_keyring(previous)


async def test_old_hmac_checkpoints_still_verify_with_the_keyring(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    directory = tmp_path / "checkpoints"
    events = await seed(trail_db, 3)
    assert events[-1].hash is not None  # appended inline
    legacy = make_checkpoint(LegacyHmacSigner(), 3, events[-1].hash, frozen_clock.now())
    write_checkpoint_file(directory, legacy)
    frozen_clock.advance(60)
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db", tmp_path, audit_checkpoint_dir=directory
    )
    current = await write_checkpoint(trail_db, settings, KeyringCheckpointSigner())
    assert current.key_id.startswith("audit-signing:v")

    keyring_report = await verify(
        trail_db, checkpoint_dir=directory, signer=KeyringCheckpointSigner()
    )
    assert keyring_report.ok, keyring_report.problem
    assert keyring_report.checkpoints_checked == 2

    # The auditor cannot check an HMAC (it would need the secret): it says so and checks
    # the rest.
    auditor_report = await verify(trail_db, checkpoints=load_checkpoints(directory, _auditor()))
    assert auditor_report.ok, auditor_report.problem
    assert auditor_report.checkpoints_checked == 1
    assert any("not checked" in note for note in auditor_report.notes)

    # A forged HMAC checkpoint (any other key) is still refused by the keyring.
    intruder = install_keyring(Keyring.generate())
    try:
        forged = make_checkpoint(LegacyHmacSigner(), 2, GENESIS_HASH, frozen_clock.now())
    finally:
        install_keyring(intruder)
    write_checkpoint_file(directory, forged)
    broken = await verify(trail_db, checkpoint_dir=directory, signer=KeyringCheckpointSigner())
    assert broken.problem is not None
    assert broken.problem.kind == "checkpoint_invalid"


async def test_archives_verify_with_the_public_key_alone(
    trail_db: Database, tmp_path: Path, frozen_clock: FrozenClock
) -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db", tmp_path, audit_archive_dir=tmp_path / "archive"
    )
    await seed(trail_db, 4)
    frozen_clock.advance(timedelta(days=settings.audit_retention_days + 1))
    (path,) = await archive_expired(trail_db, settings, KeyringCheckpointSigner())
    trailer = json.loads(path.read_text().splitlines()[-1])
    assert trailer["key_id"] == "audit-signing:v1"
    auditor = _auditor()
    previous = install_keyring(None)
    try:
        report = verify_archive(path, auditor)
        assert report.ok, report.problem
        assert report.count == 4
        lines = path.read_text().splitlines()
        lines[2] = lines[2].replace('"outcome":"success"', '"outcome":"failure"')
        path.write_text("\n".join(lines) + "\n")
        assert not verify_archive(path, auditor).ok
    finally:
        install_keyring(previous)
