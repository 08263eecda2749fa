"""Cloudflare Turnstile and hCaptcha, for deployments that prefer them to ALTCHA.

Both verify a client token with one form POST to the provider's ``siteverify`` endpoint and
answer JSON ``{"success": true|false, ...}``; the providers themselves refuse a token used
twice. Any transport error, timeout or odd answer counts as *not verified*: a CAPTCHA that
fails open would be no CAPTCHA.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog

log = structlog.get_logger(__name__)

TURNSTILE_VERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
HCAPTCHA_VERIFY_URL = "https://api.hcaptcha.com/siteverify"
# Provider tokens are up to 2048 characters (Turnstile documents this limit).
MAX_TOKEN_CHARS = 4096


class SiteverifyCaptcha:
    def __init__(
        self,
        provider: str,
        *,
        secret: str,
        verify_url: str,
        site_key: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        if not secret:
            raise ValueError(f"{provider} needs its secret key")
        self.provider = provider
        self._secret = secret
        self._verify_url = verify_url
        self._site_key = site_key
        self._http = http
        self._owns_http = http is None
        self._timeout = timeout_seconds

    def challenge(self) -> dict[str, Any]:
        """What the client needs to render the provider's widget."""
        return {"provider": self.provider, "site_key": self._site_key}

    async def verify(self, payload: str, *, remote_ip: str | None = None) -> bool:
        if not isinstance(payload, str) or not payload or len(payload) > MAX_TOKEN_CHARS:
            return False
        form = {"secret": self._secret, "response": payload}
        if remote_ip:
            form["remoteip"] = remote_ip
        if self._site_key and self.provider == "hcaptcha":
            form["sitekey"] = self._site_key  # hCaptcha then checks the token was for us
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._http.post(self._verify_url, data=form, timeout=self._timeout)
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            log.warning(
                "captcha_siteverify_failed", provider=self.provider, error_type=type(error).__name__
            )
            return False
        if not isinstance(answer, dict):
            log.warning(
                "captcha_siteverify_failed", provider=self.provider, status=response.status_code
            )
            return False
        return answer.get("success") is True

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
