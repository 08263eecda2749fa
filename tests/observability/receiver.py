"""A webhook receiver on loopback (aiohttp), recording what alert deliveries it got."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def message(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    # Answer with this status (e.g. 503 to make the sender retry); 200 by default.
    status: int = 200
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.status < 300:
            self.deliveries.append(Delivery(dict(request.headers), body))
            self.arrived.set()
        return web.Response(status=self.status, text="ok")

    def messages(self) -> list[dict[str, Any]]:
        return [d.message for d in self.deliveries]

    async def wait_for(self, predicate: Any, within: float = 10.0) -> dict[str, Any]:
        """The first message for which ``predicate(message)`` holds, waiting for it."""
        async with asyncio.timeout(within):
            while True:
                for message in self.messages():
                    if predicate(message):
                        return message
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # aiohttp exposes the bound port only through the server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()
