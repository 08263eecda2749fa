"""Property tests: the SDK's signature is API.md's formula, and any change to what is signed
changes it."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from aayu_accounts.client.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    NONCE_PATTERN,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    new_nonce,
    secret_key,
    sign_headers,
)

SECRET = "ab" * 32
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-_.%", min_size=1, max_size=60).map(
    lambda tail: "/" + tail
)
queries = st.text(alphabet="abcxyz0123456789=&%+", max_size=40)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])


def by_the_book(stamp: str, nonce: str, method: str, target: str, body: bytes) -> str:
    """API.md, written out independently of the SDK."""
    text = "\n".join([stamp, nonce, method, target, hashlib.sha256(body).hexdigest()])
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


@given(method=methods, path=paths, query=queries, body=st.binary(max_size=512))
def test_the_sdk_signs_exactly_the_documented_string(
    method: str, path: str, query: str, body: bytes
) -> None:
    headers = sign_headers(
        key_id="ak_x",
        secret=secret_key(SECRET),
        method=method,
        path=path,
        query=query,
        body=body,
        timestamp=1_700_000_000,
        nonce="fixed_nonce_0123456",
    )
    target = f"{path}?{query}" if query else path
    assert headers[SIGNATURE_HEADER] == by_the_book(
        "1700000000", "fixed_nonce_0123456", method, target, body
    )
    assert headers[KEY_ID_HEADER] == "ak_x"
    assert headers[TIMESTAMP_HEADER] == "1700000000"


@given(body=st.binary(min_size=1, max_size=256), flip=st.integers(min_value=0, max_value=255))
def test_any_changed_body_byte_changes_the_signature(body: bytes, flip: int) -> None:
    common = {
        "key_id": "ak_x",
        "secret": secret_key(SECRET),
        "method": "POST",
        "path": "/api/v1/service/usage",
        "timestamp": 1_700_000_000,
        "nonce": "fixed_nonce_0123456",
    }
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    assert (
        sign_headers(body=body, **common)[SIGNATURE_HEADER]  # type: ignore[arg-type]
        != sign_headers(body=changed, **common)[SIGNATURE_HEADER]  # type: ignore[arg-type]
    )


def test_fresh_nonces_fit_the_pattern_and_differ() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(NONCE_PATTERN.match(n) for n in nonces)
    headers = sign_headers(key_id="k", secret=b"s", method="POST", path="/p")
    assert NONCE_PATTERN.match(headers[NONCE_HEADER])
