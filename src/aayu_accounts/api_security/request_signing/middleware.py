"""Verifies every request to ``/api/v1/service/*`` before any route sees it.

The raw body is read once (the outer body-size limit bounds it), hashed for the signature,
then handed to the endpoint through a replaying ``receive``, so the endpoint parses exactly the
bytes that were signed. A verified request carries ``scope["state"]["service_client"]``; a
refused one gets 401 with its code, is counted and audited (never with the signature), and
a burst of refusals from one address is cut off by the IP limit before it can flood the audit
trail. A verified client then meets its own per-second limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.api_security.rate_limit.limiter import per_second
from aayu_accounts.api_security.rate_limit.middleware import refusal
from aayu_accounts.api_security.request_signing.errors import SignatureRefused
from aayu_accounts.api_security.request_signing.verifier import PresentedKey, SignedRequest
from aayu_accounts.api_security.responses import send_problem
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.errors import PayloadTooLarge
from aayu_accounts.observability import metrics

log = structlog.get_logger(__name__)

SERVICE_PREFIX = "/api/v1/service/"


@dataclass(frozen=True)
class ServiceCaller:
    """The verified service client of this request (``request.state.service_client``)."""

    client_id: str
    name: str
    key_id: str


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class SignedRequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SERVICE_PREFIX):
            await self.app(scope, receive, send)
            return
        runtime = scope["app"].state.api_security
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        except HTTPException as exc:
            # The outer body-size limit cuts a body without Content-Length (chunked) as it
            # streams, by raising from ``receive``: here, outside the routes' error handlers,
            # that must still be the 413 it means, not an unexpected 500.
            if exc.status_code != PayloadTooLarge.status:
                raise
            await send_problem(scope, send, PayloadTooLarge())
            return
        raw_path = scope.get("raw_path")
        request = SignedRequest(
            method=scope["method"],
            path=raw_path.decode("latin-1") if raw_path else scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            body=body,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        )
        presented: list[PresentedKey] = []
        try:
            client = await runtime.verifier.verify(request, presented)
        except SignatureRefused as refused:
            await self._refuse(scope, send, refused, presented[-1] if presented else None)
            return
        metrics.SIGNED_REQUESTS.inc()

        limit = (
            client.rate_limit_per_second or runtime.security.service_client_rate_limit_per_second
        )
        decision = await runtime.limiter.hit(per_second(limit), "service", client.client_id)
        if not decision.allowed:
            metrics.RATE_LIMIT_REFUSALS.labels("service_client").inc()
            await send_problem(scope, send, refusal(decision))
            return

        scope.setdefault("state", {})["service_client"] = ServiceCaller(
            client.client_id, client.name, client.key_id
        )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(
        self, scope: Scope, send: Send, refused: SignatureRefused, presented: PresentedKey | None
    ) -> None:
        runtime = scope["app"].state.api_security
        metrics.SIGNATURE_REFUSALS.labels(refused.code).inc()
        metrics.SUSPICIOUS_EVENTS.labels(
            "replay" if refused.code == "signature_replayed" else "bad_signature"
        ).inc()
        ip = scope.get("state", {}).get("client_ip") or "unknown"
        flood = await runtime.limiter.hit(runtime.refusal_limit, "signature_refusals", "ip", ip)
        if not flood.allowed:
            metrics.RATE_LIMIT_REFUSALS.labels("ip").inc()
            await send_problem(scope, send, refusal(flood))
            return
        await _audit(scope, refused, presented)
        await send_problem(scope, send, refused)


async def _audit(scope: Scope, refused: SignatureRefused, presented: PresentedKey | None) -> None:
    client = presented.client if presented else None
    details: dict[str, object] = {
        "code": refused.code,
        "method": scope["method"],
        "path": scope["path"][:200],
    }
    if presented is not None and presented.key_id:
        details["key_id"] = presented.key_id
    try:
        async with scope["app"].state.db.session_scope() as session:
            await record(
                session,
                AuditAction.INVALID_SIGNATURE,
                actor=Actor.service(client.client_id) if client else Actor.anonymous(),
                target_type="service_client" if client else None,
                target_id=client.client_id if client else None,
                outcome="denied",
                details=details,
            )
    except Exception as exc:  # the refusal stands even if it cannot be recorded
        # The type only, no trace: a database error may carry the statement's parameters.
        log.error("signature.audit_failed", error=type(exc).__name__)  # noqa: TRY400
