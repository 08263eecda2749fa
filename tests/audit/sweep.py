"""A pytest plugin that sweeps every audit row the whole suite writes for the suite's secrets.

Audit rows written in tests vanish with each test's rolled-back transaction, so the sweep
watches them as they are written: a SQLAlchemy listener on every engine keeps the parameters
of each audit append (minus ids and hashes, which are random hex). The secrets are watched the
same way, on the wire: every request and response that goes through ``httpx.ASGITransport``
(the ``client`` fixture) is read for passwords, tokens, TOTP and recovery codes, MFA and
client secrets, and bearer/cookie credentials. ``test_secret_sweep.py`` runs last and checks
that no secret appears in any audit row (as a whole token, so a six-digit code is not found
by chance inside a longer number).

Observation only: nothing is replaced, every request and statement runs as it would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.routing import compile_path

SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "mfa_token",
        "code",
        "captcha",
        "secret",
        "recovery_codes",
        "otpauth_uri",
    }
)
_NOT_CONTENT = frozenset({"id", "hash", "prev_hash", "leaf"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_SECRET_LENGTH = 6
IDENTIFIER = re.compile(r"[a-z]+(?:[_.][a-z]+)*")


class Sweep:
    def __init__(self) -> None:
        self.audit_rows: list[str] = []
        self.secrets: set[str] = set()
        self.requests_seen = 0
        # (method, route template) -> [successful calls, successful calls that left an event]
        self.state_changes: dict[tuple[str, str], list[int]] = {}
        self.full_run = False

    def note_call(self, method: str, route: str, status: int, events: int) -> None:
        # A 303 is the console's success (POST, then redirect to the next page).
        if method not in STATE_CHANGING or not 200 <= status < 400:
            return
        counts = self.state_changes.setdefault((method, route), [0, 0])
        counts[0] += 1
        counts[1] += 1 if events else 0

    def add_secret(self, value: Any) -> None:
        # Lowercase snake_case words are identifiers (error codes, event types such as
        # "payment_failed" sent in a field named "code"), never the secrets tests use.
        if (
            isinstance(value, str)
            and len(value) >= MIN_SECRET_LENGTH
            and not IDENTIFIER.fullmatch(value)
            # Placeholders such as 64 zeros (a made-up signature) are also the audit chain's
            # genesis hash: a value with no variety is no secret.
            and len(set(value)) > 2
        ):
            self.secrets.add(value)
        elif isinstance(value, list):
            for item in value:
                self.add_secret(item)

    def add_json(self, body: bytes) -> None:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # the attack suite sends JSON nested 10^5 deep
            return
        self._walk(document)

    def _walk(self, document: Any) -> None:
        if isinstance(document, dict):
            for key, value in document.items():
                if key in SECRET_KEYS:
                    self.add_secret(value)
                self._walk(value)
        elif isinstance(document, list):
            for item in document:
                self._walk(item)

    def add_form(self, body: bytes) -> None:
        """A console form (urlencoded): its secret fields, as in a JSON body."""
        for key, values in parse_qs(body.decode("utf-8", "replace")).items():
            if key in SECRET_KEYS:
                self.add_secret(values)

    def leaks(self) -> list[tuple[str, str]]:
        """(secret prefix, row excerpt) for each secret found in an audit row."""
        found: list[tuple[str, str]] = []
        text = "\n".join(self.audit_rows)
        for secret in self.secrets:
            pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")
            match = pattern.search(text)
            if match:
                start = max(0, match.start() - 40)
                found.append((secret[:2] + "…", text[start : match.start()]))
        return found


SWEEP = Sweep()


def _text_values(value: Any) -> Iterable[str]:
    # Only text can carry a secret. Times and numbers are left out: a timestamp's microseconds
    # are six digits, and would match a TOTP code used in the same second by chance.
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _text_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _text_values(item)


def _content(parameters: Any) -> Iterable[str]:
    rows = parameters if isinstance(parameters, list | tuple) else [parameters]
    for row in rows:
        if isinstance(row, dict):
            content = [value for key, value in row.items() if key not in _NOT_CONTENT]
            yield repr(list(_text_values(content)))
        else:
            yield repr(list(_text_values(row)))


@event.listens_for(Engine, "before_cursor_execute")
def _watch_audit_appends(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, _many: bool
) -> None:
    if "audit_chain_append" in statement or "INSERT INTO audit_events" in statement:
        compiled = getattr(context, "compiled_parameters", None)
        SWEEP.audit_rows.extend(_content(compiled if compiled else parameters))


_original_handle = httpx.ASGITransport.handle_async_request


async def _watching_handle(self: httpx.ASGITransport, request: httpx.Request) -> httpx.Response:
    SWEEP.requests_seen += 1
    if not isinstance(request.stream, httpx.AsyncByteStream) or hasattr(request, "_content"):
        if "form-urlencoded" in request.headers.get("content-type", ""):
            SWEEP.add_form(request.content)
        else:
            SWEEP.add_json(request.content)  # a streamed body (no length) is not read here
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        SWEEP.add_secret(authorization[7:].strip())
    for name in ("x-aayu-signature", "x-csrf-token"):
        SWEEP.add_secret(request.headers.get(name))
    before = len(SWEEP.audit_rows)
    response = await _original_handle(self, request)
    route = _route_template(self.app, request.method, request.url.path)
    if route is not None:
        SWEEP.note_call(request.method, route, response.status_code, len(SWEEP.audit_rows) - before)
    body = await response.aread()  # the ASGI transport buffers it anyway; cached for the client
    if "json" in response.headers.get("content-type", ""):
        SWEEP.add_json(body)
    for cookie in response.headers.get_list("set-cookie"):
        name, _, rest = cookie.partition("=")
        if name.strip() in ("aayu_session", "aayu_csrf"):
            SWEEP.add_secret(rest.split(";", 1)[0])
    return response


_route_tables: dict[int, list[tuple[str, frozenset[str], re.Pattern[str]]]] = {}


def _route_template(app: Any, method: str, path: str) -> str | None:
    from tests.fixtures.routes import api_routes

    table = _route_tables.get(id(app))
    if table is None:
        table = [
            (route.path, route.methods, compile_path(route.path)[0]) for route in api_routes(app)
        ]
        _route_tables[id(app)] = table
    for template, methods, regex in table:
        if method in methods and regex.match(path):
            return template
    return None


httpx.ASGITransport.handle_async_request = _watching_handle  # type: ignore[method-assign]

SWEEP_TEST = "test_secret_sweep.py::"


def pytest_configure(config: pytest.Config) -> None:
    # Route coverage is judged only when the whole suite runs (no narrower paths given).
    root = config.rootpath / "tests"
    given = [arg.split("::", 1)[0] for arg in config.args]
    SWEEP.full_run = all(
        (config.invocation_params.dir / arg).resolve() in (root, config.rootpath) for arg in given
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The sweep judges what the whole run wrote: it runs after everything else.
    last = [item for item in items if SWEEP_TEST in item.nodeid]
    items[:] = [item for item in items if SWEEP_TEST not in item.nodeid] + last
