"""Pure ASGI middleware for request context: id, client IP, access log.

Written as plain ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, streaming
untouched, and contextvars set here are visible to the endpoint.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.errors import (
    PROBLEM_CONTENT_TYPE,
    AppError,
    PayloadTooLarge,
    error_for_unexpected,
)

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
user_agent_var: ContextVar[str | None] = ContextVar("user_agent", default=None)

access_log = structlog.get_logger("aayu_accounts.access")
# The standard-library logger under it: asking it whether INFO is on costs a dict lookup,
# where building a structlog event that the level filter then drops costs a bind per request.
_access_stdlib = logging.getLogger("aayu_accounts.access")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def resolve_client_ip(peer: str | None, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The client's address: ``X-Forwarded-For`` is believed only from trusted proxies.

    Walks the chain from the right, skipping trusted proxies, so a client cannot spoof its
    address by sending its own ``X-Forwarded-For``.
    """
    if not peer:
        return "unknown"
    if not trusted or not forwarded_for or not _in_any(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _in_any(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in_any(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


RequestObserver = Callable[[str, str, int, float], None]


class RequestContextMiddleware:
    """Request id (taken from a valid ``X-Request-ID`` or generated), client IP, access log.

    ``observers`` are told (method, route template, status, seconds) of every request; the
    composition root wires metrics there, so this module needs no knowledge of them.
    """

    def __init__(
        self,
        app: ASGIApp,
        trusted_proxies: list[Network] | None = None,
        observers: list[RequestObserver] | None = None,
    ) -> None:
        self.app = app
        self.trusted = trusted_proxies or []
        self.observers = observers or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the raw headers for the three this needs (the last of a repeated
        # header wins, as in a dict built from them).
        incoming = forwarded_for = raw_agent = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value
            elif key == b"user-agent":
                raw_agent = value
            elif key == b"x-forwarded-for":
                forwarded_for = value
        request_id = (
            incoming.decode("latin-1")
            if incoming is not None and _VALID_REQUEST_ID.match(incoming.decode("latin-1"))
            else os.urandom(16).hex()
        )
        client = scope.get("client")
        peer = client[0] if client else None
        ip = resolve_client_ip(
            peer,
            forwarded_for.decode("latin-1") if forwarded_for is not None else None,
            self.trusted,
        )
        user_agent = raw_agent[:300].decode("latin-1") if raw_agent is not None else ""
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = ip
        state["user_agent"] = user_agent
        tokens = (
            request_id_var.set(request_id),
            client_ip_var.set(ip),
            user_agent_var.set(user_agent),
        )
        log_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Handled here rather than by Starlette's outermost error middleware, so the log
            # line carries the request id and the 500 carries X-Request-ID.
            error = error_for_unexpected(exc)
            if response_started:
                raise
            await _send_problem(send_with_id, error)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            if _access_stdlib.isEnabledFor(logging.INFO):
                access_log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    ip=ip,
                )
            for observe in self.observers:
                observe(scope["method"], route or "unmatched", status, elapsed)
            structlog.contextvars.reset_contextvars(**log_tokens)
            request_id_var.reset(tokens[0])
            client_ip_var.reset(tokens[1])
            user_agent_var.reset(tokens[2])


class BodySizeLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, without ever holding more than that.

    A declared ``Content-Length`` over the limit is refused before any byte is read. A body
    without one (chunked) is counted as it streams; crossing the limit raises the 413 inside
    the application's read, where the error handler renders it as problem+json.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await _send_problem(send, PayloadTooLarge())
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited_receive, send)


async def _send_problem(send: Send, error: AppError) -> None:
    body = json.dumps(error.problem()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
