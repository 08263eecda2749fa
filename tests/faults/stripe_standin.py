"""A faulty Stripe: an HTTP stand-in on loopback in front of localstripe.

It forwards every request to localstripe, except that it can be told to fail the next
requests to a path, the way Stripe and the network do:

* ``"500"``: answer 500 with Stripe's error body, without applying anything;
* ``"timeout"``: apply the request (forward it), then hold the answer past the client's
  timeout, so the client cannot know that it was applied — the case idempotency keys exist for.

localstripe ignores ``Idempotency-Key``; Stripe does not. The stand-in adds Stripe's rule
(a POST repeated with a key already seen gets the first answer back, ``Idempotent-Replayed:
true``, and is not applied again), so a client that retries with the same key creates one
object, and a client that changed its key would create two — which the tests would see in
localstripe's store. Every request is recorded with its key.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.client.server import free_port

IDEMPOTENCY_HEADER = "Idempotency-Key"
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    key: str | None
    outcome: str  # "forwarded", "500", "timeout", "replayed"


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class StripeStandIn:
    upstream: str
    hold_seconds: float = 3.0
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    faults: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    _answers: dict[str, _Answer] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    def fail_next(self, method: str, path: str, *kinds: str) -> None:
        """The next requests ``method path`` fail with ``kinds``, in order."""
        self.faults[(method, path)].extend(kinds)

    def keys_for(self, method: str, path: str) -> list[str | None]:
        return [s.key for s in self.seen if (s.method, s.path) == (method, path)]

    async def _forward(self, request: web.Request, body: bytes) -> _Answer:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            content = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return _Answer(answer.status, kept, content)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        pending = self.faults.get((request.method, request.path))
        fault = pending.pop(0) if pending else None
        if key is not None and request.method == "POST" and key in self._answers:
            self.seen.append(Seen(request.method, request.path, key, "replayed"))
            cached = self._answers[key]
            return web.Response(
                status=cached.status,
                body=cached.body,
                headers={**cached.headers, "Idempotent-Replayed": "true"},
            )
        if fault == "500":
            self.seen.append(Seen(request.method, request.path, key, "500"))
            error = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
            return web.Response(status=500, text=json.dumps(error), content_type="application/json")
        answer = await self._forward(request, body)
        if key is not None and request.method == "POST" and answer.status < 500:
            self._answers[key] = answer
        if fault == "timeout":
            self.seen.append(Seen(request.method, request.path, key, "timeout"))
            await asyncio.sleep(self.hold_seconds)  # applied, but the client gives up first
        else:
            self.seen.append(Seen(request.method, request.path, key, "forwarded"))
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


@asynccontextmanager
async def stripe_stand_in(upstream: str, hold_seconds: float = 3.0) -> AsyncIterator[StripeStandIn]:
    stand_in = StripeStandIn(upstream=upstream, hold_seconds=hold_seconds)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stand_in.url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        stand_in._session = session
        try:
            yield stand_in
        finally:
            await runner.cleanup()
