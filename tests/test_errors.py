"""Every failure is RFC 9457 problem+json with a stable code, and reveals nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from aayu_accounts.errors import PROBLEM_CONTENT_TYPE, Conflict, error_for_unexpected

probe = APIRouter()


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


@probe.post("/_probe/echo")
async def echo(body: Echo) -> Echo:
    return body


@probe.get("/_probe/conflict")
async def conflict() -> None:
    raise Conflict("It already exists.", headers={"Retry-After": "3"})


@probe.get("/_probe/crash")
async def crash() -> None:
    raise RuntimeError("secret-db-password=hunter2 SELECT * FROM users")


@pytest.fixture
def probed(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert "x-request-id" in response.headers
    return dict(body)


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_two_mebibyte_body_is_413(client: httpx.AsyncClient, probed: FastAPI) -> None:
    payload = json.dumps({"name": "x" * (2 * 1024 * 1024)})
    response = await client.post(
        "/_probe/echo", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(("extra_bytes", "status"), [(0, 200), (1, 413)])
async def test_the_limit_is_one_mebibyte(
    client: httpx.AsyncClient, probed: FastAPI, extra_bytes: int, status: int
) -> None:
    envelope = len(json.dumps({"name": ""}))
    payload = json.dumps({"name": "x" * (1024 * 1024 - envelope + extra_bytes)})
    assert len(payload) == 1024 * 1024 + extra_bytes
    response = await client.post(
        "/_probe/echo", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == status


async def test_streamed_oversized_body_without_length_is_413(
    client: httpx.AsyncClient, probed: FastAPI
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post(
        "/_probe/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "streamed"),
    [
        ("/api/v1/auth/login", False),  # a JSON endpoint
        ("/api/v1/auth/login", True),
        ("/api/v1/service/usage", False),  # signed: the signature check reads the body first
        ("/api/v1/service/usage", True),
        ("/sign-in", False),  # a console form: refused before any page is reached
        ("/no/such/route", False),
    ],
)
async def test_a_two_mebibyte_body_is_413_wherever_it_is_sent(
    client: httpx.AsyncClient, path: str, streamed: bool
) -> None:
    body = b"x" * (2 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = await client.post(
        path,
        content=chunks() if streamed else body,
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_a_streamed_body_without_length_is_judged_where_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65536

    # Nobody reads a body sent to an unknown route: it is a 404, as any request there.
    assert_problem(await client.post("/no/such/route", content=chunks()), 404, "not_found")
    # A console page answers the browser with its own page, with the same status.
    page = await client.post(
        "/sign-in", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert page.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/api/v1/auth/login", "POST"), ("PUT", "/ready", "GET")],
)
async def test_wrong_method_on_real_routes_is_405_problem(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert allowed in response.headers["allow"]


async def test_malformed_json_on_a_real_endpoint_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        content=b'{"email": "a@b.example", ',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


async def test_malformed_json_is_400(client: httpx.AsyncClient, probed: FastAPI) -> None:
    response = await client.post(
        "/_probe/echo", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")


async def test_unknown_field_is_422_with_locations(
    client: httpx.AsyncClient, probed: FastAPI
) -> None:
    response = await client.post("/_probe/echo", json={"name": "a", "password": "p4ss-w0rd!"})
    body = assert_problem(response, 422, "validation_error")
    assert "p4ss-w0rd!" not in response.text
    assert body["errors"]


async def test_app_error_keeps_its_headers(client: httpx.AsyncClient, probed: FastAPI) -> None:
    response = await client.get("/_probe/conflict")
    assert_problem(response, 409, "conflict")
    assert response.headers["retry-after"] == "3"


async def test_unexpected_error_reveals_nothing_and_logs_trace(
    client: httpx.AsyncClient, probed: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/_probe/crash", headers={"x-request-id": "trace-me-12345"})
    assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "SELECT" not in response.text
    assert response.headers["x-request-id"] == "trace-me-12345"
    logged = [str(r.msg) for r in caplog.records if "request.unhandled" in str(r.msg)]
    assert logged, "the failure must be logged"
    assert "Traceback" in logged[0]
    assert "trace-me-12345" in logged[0], "the log line carries the request id"


async def test_request_id_is_generated_when_missing_or_invalid(client: httpx.AsyncClient) -> None:
    generated = (await client.get("/health")).headers["x-request-id"]
    assert len(generated) >= 16
    bad = (await client.get("/health", headers={"x-request-id": "bad id\nwith newline"})).headers
    assert bad["x-request-id"] != "bad id\nwith newline"


def test_starlettes_413_raised_outside_the_routes_is_still_a_413() -> None:
    """The body limit raises Starlette's 413 from ``receive``; a middleware that reads the body
    (outside the routes' handlers) must still answer 413, not an unexpected 500."""
    answer = error_for_unexpected(StarletteHTTPException(status_code=413))
    assert (answer.status, answer.code) == (413, "payload_too_large")
