"""Every form control on the console's pages has a label; every page has one <h1>, a main
landmark and a language (the parts of accessibility a test can see in the HTML)."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from aayu_accounts.db import Database
from tests.console.helpers import page, post, sign_in
from tests.identity.accounts.helpers import register, verify


class _Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.h1 = 0
        self.main = False
        self.lang = False
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html" and found.get("lang"):
            self.lang = True
        if tag == "main":
            self.main = True
        if tag == "h1":
            self.h1 += 1
        if tag == "label":
            self._in_label += 1
            if found.get("for"):
                self.labelled.add(str(found["for"]))
        if (
            tag in ("input", "select", "textarea")
            and found.get("type")
            not in (
                "hidden",
                "submit",
            )
            and "hidden" not in found
        ):
            self.controls.append({**found, "_wrapped": "1" if self._in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


def _check(html: str, path: str) -> None:
    parsed = _Controls()
    parsed.feed(html)
    assert parsed.lang, path
    assert parsed.main, path
    assert parsed.h1 == 1, f"{path}: {parsed.h1} <h1>"
    unlabelled = [
        c
        for c in parsed.controls
        if not (c.get("id") in parsed.labelled or c.get("aria-label") or c.get("_wrapped"))
    ]
    assert not unlabelled, f"{path}: controls without a label: {unlabelled}"


async def test_every_control_has_a_label(console: httpx.AsyncClient, db: Database) -> None:
    for path in (
        "/sign-in",
        "/sign-up",
        "/reset-password/request",
        "/reset-password?token=x",
        "/verify-email?token=x",
        "/accept-invitation?token=x",
    ):
        _check((await page(console, path)).text, path)
    account = await register(console)
    await verify(console, db, account)
    await sign_in(console, account.email, account.password)
    for path in ("/account", "/account/mfa", "/clinic"):
        _check((await page(console, path)).text, path)
    enrolling = await post(console, "/account/mfa", "/account/mfa/start")
    _check(enrolling.text, "/account/mfa/start")
