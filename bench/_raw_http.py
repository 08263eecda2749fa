"""A minimal HTTP/1.1 client on one kept-alive connection, for load generators and probers.

The benchmarks' clients share the machine's two cores with the server under test; a full client
library spends more CPU per request than a cheap route costs (httpx: about 1-2 ms), and that CPU
is taken from the server being measured. This speaks just enough HTTP/1.1 for ``GET`` and JSON
``POST`` requests to our own server: a fixed request, the status line and a ``Content-Length``
body. It keeps no cookies, so every request is a fresh client's.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import httpx


class RawConnection:
    """``async with RawConnection(base_url) as conn: status = await conn.get("/health")``."""

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.host = url.host
        self.port = url.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def request_bytes(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n".encode(
            "latin-1"
        )

    def post_json_bytes(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def __aenter__(self) -> RawConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def send(self, request: bytes) -> int:
        """Send a request made by :meth:`request_bytes`; the response's status (body read)."""
        if self._reader is None or self._writer is None:
            raise RuntimeError("open the connection with `async with` first")
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self._reader.readexactly(length)
        return status

    async def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        return await self.send(self.request_bytes(path, headers))
