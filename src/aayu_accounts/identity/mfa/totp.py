"""TOTP (RFC 6238) as authenticator apps speak it: SHA-1, 6 digits, 30-second steps.

A code is accepted for the current step and one step either side (clock drift, a code typed as
it rolls over), and *once*: :func:`verify_totp` returns the accepted step, which the caller
stores, and refuses any step at or before the stored one. Without that, a code seen over a
shoulder or phished works again for about 90 seconds (as it does in several identity servers).
"""

from __future__ import annotations

import binascii
import hmac
import io

import pyotp
import segno

from aayu_accounts.kit import clock

ISSUER = "Aayu Well"
STEP_SECONDS = 30
DIGITS = 6
# One step either side; RFC 6238 section 5.2 recommends at most one step of network delay.
TOLERANCE_STEPS = 1


def new_secret() -> str:
    """A fresh 160-bit secret, base32 (RFC 4226 recommends 160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account_name: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as a standalone SVG QR code (no XML declaration; embeds inline or as an image)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(
        buffer, kind="svg", xmldecl=False, scale=4, border=4, svgns=True
    )
    return buffer.getvalue().decode("utf-8")


def current_step() -> int:
    return int(clock.now().timestamp()) // STEP_SECONDS


def verify_totp(secret: str, code: str, last_used_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than ``last_used_step``.

    Returns None for a wrong, malformed, too old or too new code, and for a replay (a step at
    or before ``last_used_step``). Every candidate step is compared in constant time.
    """
    candidate = "".join(code.split()) if isinstance(code, str) else ""
    if len(candidate) != DIGITS or not candidate.isascii() or not candidate.isdigit():
        return None
    try:
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        now_step = current_step()
        steps = range(now_step - TOLERANCE_STEPS, now_step + TOLERANCE_STEPS + 1)
        expected = [(step, totp.generate_otp(step)) for step in steps]
    except (binascii.Error, ValueError, TypeError):
        return None  # a corrupt stored secret fails closed
    accepted: int | None = None
    for step, otp in expected:
        # No early exit: the comparison costs the same whichever step matches.
        matches = hmac.compare_digest(otp.encode(), candidate.encode())
        if matches and (last_used_step is None or step > last_used_step):
            accepted = step
    return accepted
