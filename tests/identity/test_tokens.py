"""Opaque tokens: 256 random bits, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import base64
import hashlib

from aayu_accounts.identity.tokens import hash_token, new_token, token_matches


def test_tokens_carry_256_random_bits_and_are_url_safe() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in list(tokens)[:20]:
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_only_the_sha256_hash_is_stored() -> None:
    token = new_token()
    stored = hash_token(token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert len(stored) == 64
    assert token not in stored


def test_matching_is_exact() -> None:
    token = new_token()
    stored = hash_token(token)
    assert token_matches(token, stored)
    assert token_matches(token, stored.upper())
    assert not token_matches(token[:-1], stored)
    assert not token_matches(new_token(), stored)
    assert not token_matches(token, "")
    assert not token_matches("", stored)
