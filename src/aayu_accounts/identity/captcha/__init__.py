"""CAPTCHA behind one interface: ALTCHA by default, Cloudflare Turnstile or hCaptcha by choice."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from aayu_accounts.config import CaptchaProvider, Settings
from aayu_accounts.identity.captcha.altcha_captcha import AltchaCaptcha, HmacKey, HmacKeys
from aayu_accounts.identity.captcha.siteverify import (
    HCAPTCHA_VERIFY_URL,
    TURNSTILE_VERIFY_URL,
    SiteverifyCaptcha,
)
from aayu_accounts.identity.throttle.store import ThrottleStore

__all__ = [
    "AltchaCaptcha",
    "CaptchaVerifier",
    "SiteverifyCaptcha",
    "build_captcha",
]


class CaptchaVerifier(Protocol):
    provider: str

    def challenge(self) -> dict[str, Any]:
        """The body of ``GET /api/v1/auth/captcha`` (and of a 401 ``captcha_required``)."""
        ...

    async def verify(self, payload: str, *, remote_ip: str | None = None) -> bool:
        """True when ``payload`` is a valid, fresh, unused solution; never raises."""
        ...


def build_captcha(
    settings: Settings,
    store: ThrottleStore,
    *,
    hmac_key: HmacKey | HmacKeys | None = None,
    http: httpx.AsyncClient | None = None,
) -> CaptchaVerifier:
    """The configured CAPTCHA. ``hmac_key`` (ALTCHA): the keyring's CAPTCHA keys, read at each
    use; without a keyring ``AAYU_ALTCHA_HMAC_KEY``, or a random per-process key (one instance
    only)."""
    provider = settings.captcha_provider
    if provider is CaptchaProvider.ALTCHA:
        key = hmac_key or settings.altcha_hmac_key or AltchaCaptcha.random_key()
        return AltchaCaptcha(
            key,
            store,
            max_number=settings.altcha_max_number,
            expires_seconds=settings.altcha_expires_seconds,
        )
    default_url = (
        TURNSTILE_VERIFY_URL if provider is CaptchaProvider.TURNSTILE else HCAPTCHA_VERIFY_URL
    )
    return SiteverifyCaptcha(
        provider.value,
        secret=settings.captcha_secret or "",
        verify_url=settings.captcha_verify_url or default_url,
        site_key=settings.captcha_site_key,
        http=http,
    )
