"""The in-memory keyring and primitives: signing, encryption, blind indexes, activation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, KeyVersion, WrongKeyUse
from aayu_accounts.crypto.keyring.core import HEADER_BYTES, ciphertext_header
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock

RING = Keyring.generate()


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=512), aad=st.binary(max_size=64))
def test_encrypt_round_trip_and_binding(plaintext: bytes, aad: bytes) -> None:
    sealed = RING.encrypt(KeyPurpose.DATA, plaintext, aad)
    assert RING.decrypt(KeyPurpose.DATA, sealed, aad) == plaintext
    with pytest.raises(primitives.DecryptionFailed):
        RING.decrypt(KeyPurpose.DATA, sealed, aad + b"x")
    with pytest.raises(primitives.DecryptionFailed):
        tampered = bytearray(sealed)
        tampered[-1] ^= 1
        RING.decrypt(KeyPurpose.DATA, bytes(tampered), aad)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=256))
def test_sign_verify(data: bytes) -> None:
    version, mac = RING.sign(KeyPurpose.SESSION, data)
    assert RING.verify(KeyPurpose.SESSION, data, version, mac)
    assert not RING.verify(KeyPurpose.SESSION, data + b"!", version, mac)
    assert not RING.verify(KeyPurpose.SESSION, data, version + 1, mac)
    # Keys are per purpose: a session MAC is not a CSRF MAC.
    assert not RING.verify(KeyPurpose.CSRF, data, version, mac)


def test_a_key_serves_only_its_purpose() -> None:
    with pytest.raises(WrongKeyUse):
        RING.sign(KeyPurpose.DATA, b"x")
    with pytest.raises(WrongKeyUse):
        RING.encrypt(KeyPurpose.SESSION, b"x", b"")


def test_relabelled_version_and_purpose_fail() -> None:
    now = clock.now()
    secret = primitives.random_key()
    ring = Keyring(
        [
            KeyVersion(KeyPurpose.DATA, 1, secret, now),
            KeyVersion(KeyPurpose.DATA, 2, secret, now),  # same bytes: only the label differs
            KeyVersion(KeyPurpose.CLIENT_SECRET, 2, secret, now),
        ]
    )
    sealed = ring.encrypt(KeyPurpose.DATA, b"payload", b"aad")
    relabelled = ciphertext_header(1) + sealed[HEADER_BYTES:]
    with pytest.raises(primitives.DecryptionFailed):
        ring.decrypt(KeyPurpose.DATA, relabelled, b"aad")
    with pytest.raises(primitives.DecryptionFailed):
        ring.decrypt(KeyPurpose.CLIENT_SECRET, sealed, b"aad")


def test_new_versions_activate_later(frozen_clock: FrozenClock) -> None:
    now = clock.now()
    ring = Keyring(
        [
            KeyVersion(KeyPurpose.CSRF, 1, primitives.random_key(), now - timedelta(days=1)),
            KeyVersion(KeyPurpose.CSRF, 2, primitives.random_key(), now + timedelta(minutes=2)),
        ]
    )
    assert ring.sign(KeyPurpose.CSRF, b"t")[0] == 1
    frozen_clock.advance(timedelta(minutes=2))
    assert ring.sign(KeyPurpose.CSRF, b"t")[0] == 2


def test_blind_index_is_deterministic_and_domain_separated() -> None:
    index = RING.blind_index("ada@example.org", "email")
    assert index == RING.blind_index("ada@example.org", "email")
    assert index != RING.blind_index("ada@example.org", "phone")
    assert index != Keyring.generate().blind_index("ada@example.org", "email")
    assert RING.blind_index_candidates("ada@example.org", "email") == [index]
    assert b"ada" not in index


def test_key_text_form() -> None:
    key = primitives.random_key()
    assert primitives.decode_key(primitives.encode_key(key)) == key
    with pytest.raises(ValueError, match="32 bytes"):
        primitives.decode_key(primitives.encode_key(b"short"))
    with pytest.raises(ValueError, match="32-byte"):
        primitives.aead_seal(b"short", b"", b"")
