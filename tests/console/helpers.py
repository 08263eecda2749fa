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


def follow(location: str) -> str:
    """A redirect's path (the console answers 303 with a local path)."""
    assert location.startswith("/"), location
    return location


async def page(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path``, following the console's redirects."""
    response = await client.get(path)
    for _ in range(5):
        if response.status_code != 303:
            break
        response = await client.get(follow(response.headers["location"]))
    return response


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """Sign in through the console's form; returns the answer (303 when signed in)."""
    return await submit(client, "/sign-in", "/sign-in", {"email": email, "password": password})


async def post(
    client: httpx.AsyncClient, page_path: str, action: str, **fields: str
) -> httpx.Response:
    """POST a form of the page at ``page_path`` (as signed in now)."""
    return await submit(client, page_path, action, fields)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found, f"no field {name}"
    return unescape(found.group(1))
