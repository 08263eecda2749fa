"""Reading console pages like a browser would: the CSRF field, forms, flash messages."""

from __future__ import annotations

import re
from html import unescape

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return unescape(found.group(1))


async def submit(
    client: httpx.AsyncClient, page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    """GET ``page``, then POST ``fields`` to ``action`` with the page's CSRF token and a
    same-origin ``Origin`` (as a browser does)."""
    got = await client.get(page)
    assert got.status_code == 200, got.text
    return await client.post(
        action,
        data={"csrf_token": csrf_of(got.text), **fields},
        headers={"Origin": "https://testserver"},
    )
