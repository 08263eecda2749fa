"""MFA primitives: TOTP that an authenticator app (pyotp as reference) agrees with, ±1 step,
replay refused; QR code as SVG; recovery codes hashed and single use."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import pyotp
import pytest

from aayu_accounts.identity.mfa import (
    RECOVERY_CODE_COUNT,
    consume_recovery_code,
    current_step,
    generate_recovery_codes,
    hash_recovery_code,
    new_secret,
    provisioning_uri,
    qr_svg,
    verify_totp,
)
from aayu_accounts.kit.clock import FrozenClock

# RFC 6238 appendix B's SHA-1 key, "12345678901234567890", in base32.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


def app_code(secret: str, at: datetime | float) -> str:
    """What the user's authenticator app shows at ``at``."""
    return pyotp.TOTP(secret).at(at)


def test_secrets_are_160_bit_base32_and_unique() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in list(secrets)[:10]:
        assert len(base64.b32decode(secret)) == 20


def test_provisioning_uri_names_the_issuer_and_account() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, "priya@example.com")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Aayu Well:priya@example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Aayu Well"]
    assert pyotp.parse_uri(uri).secret == secret
    assert "Other" in unquote(provisioning_uri(secret, "x@example.com", issuer="Other"))


def test_qr_code_is_a_standalone_svg() -> None:
    svg = qr_svg(provisioning_uri(new_secret(), "priya@example.com"))
    assert svg.startswith("<svg")
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own output, not untrusted input
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    assert "priya" not in svg  # the data is in the modules, not in text


def test_rfc_6238_vector(frozen_clock: FrozenClock) -> None:
    # RFC 6238 appendix B: T = 59 s gives 94287082 on 8 digits; its last 6 are what 6-digit
    # apps show (dynamic truncation mod 10^6).
    frozen_clock.set(datetime.fromtimestamp(59, UTC))
    assert verify_totp(RFC_SECRET, "287082", None) == 1
    frozen_clock.set(datetime.fromtimestamp(1111111109, UTC))
    assert verify_totp(RFC_SECRET, "081804", None) == 1111111109 // 30


def test_current_previous_and_next_steps_are_accepted(frozen_clock: FrozenClock) -> None:
    secret = new_secret()
    frozen_clock.set(datetime(2026, 11, 28, 12, 0, 15, tzinfo=UTC))
    now = frozen_clock.now()
    step = current_step()
    assert verify_totp(secret, app_code(secret, now), None) == step
    assert verify_totp(secret, app_code(secret, now.timestamp() - 30), None) == step - 1
    assert verify_totp(secret, app_code(secret, now.timestamp() + 30), None) == step + 1
    assert verify_totp(secret, app_code(secret, now.timestamp() - 60), None) is None
    assert verify_totp(secret, app_code(secret, now.timestamp() + 60), None) is None


def test_a_code_is_accepted_once(frozen_clock: FrozenClock) -> None:
    secret = new_secret()
    code = app_code(secret, frozen_clock.now())
    used = verify_totp(secret, code, None)
    assert used is not None
    assert verify_totp(secret, code, used) is None  # replay, same step
    frozen_clock.advance(30)
    assert verify_totp(secret, code, used) is None  # still within ±1 step, but used
    # An older code that is still inside the window is refused too once a newer one was used.
    older = app_code(secret, frozen_clock.now().timestamp() - 30)
    newest = verify_totp(secret, app_code(secret, frozen_clock.now()), used)
    assert newest == used + 1
    assert verify_totp(secret, older, newest) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5", "١٢٣٤٥٦", "-12345"])
def test_malformed_codes_are_refused(code: str, frozen_clock: FrozenClock) -> None:
    assert verify_totp(new_secret(), code, None) is None


def test_spaces_in_a_typed_code_are_ignored(frozen_clock: FrozenClock) -> None:
    secret = new_secret()
    code = app_code(secret, frozen_clock.now())
    assert verify_totp(secret, f" {code[:3]} {code[3:]} ", None) == current_step()


def test_wrong_code_and_corrupt_secret_are_refused(frozen_clock: FrozenClock) -> None:
    secret = new_secret()
    code = app_code(secret, frozen_clock.now())
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert verify_totp(secret, wrong, None) is None
    assert verify_totp("not*base32!", code, None) is None


def test_ten_recovery_codes_unique_and_readable() -> None:
    codes = generate_recovery_codes()
    assert len(codes) == RECOVERY_CODE_COUNT == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){3}", code)
    assert set(codes).isdisjoint(generate_recovery_codes())


def test_recovery_codes_are_stored_hashed_and_single_use() -> None:
    codes = generate_recovery_codes()
    stored = [hash_recovery_code(code) for code in codes]
    assert all(len(h) == 64 and h not in codes for h in stored)
    remaining = consume_recovery_code(codes[3], stored)
    assert remaining is not None
    assert len(remaining) == 9
    assert hash_recovery_code(codes[3]) not in remaining
    assert consume_recovery_code(codes[3], remaining) is None  # used up
    # Typed loosely: upper case, spaces instead of hyphens.
    loosely = codes[7].upper().replace("-", " ")
    after = consume_recovery_code(loosely, remaining)
    assert after is not None
    assert len(after) == 8


@pytest.mark.parametrize("attempt", ["", "aaaa-aaaa-aaaa-aaaa", "too-short", "x" * 200])
def test_wrong_recovery_codes_are_refused(attempt: str) -> None:
    stored = [hash_recovery_code(code) for code in generate_recovery_codes()]
    assert consume_recovery_code(attempt, stored) is None
    assert consume_recovery_code(attempt, []) is None
