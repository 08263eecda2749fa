"""A loopback TCP proxy the tests cut and restore, standing between the app and a real server.

Two kinds of outage, both real for the driver (no patched function) while the shared
PostgreSQL and Redis stay up for everyone else:

* ``cut()``: every open connection is reset and new ones are turned away at once, as with a
  stopped server whose host still answers;
* ``cut(hang=True)``: connections stay open but nothing gets through and new ones are accepted
  and then ignored, as with a network partition or a frozen server — the case where only
  timeouts and a breaker keep requests from hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut_off = False
        self.hanging = False
        self.accepted = 0
        self._held: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self, *, hang: bool = False) -> None:
        """Drop (or, with ``hang``, silence) every connection until :meth:`restore`."""
        self.cut_off = True
        self.hanging = hang
        if not hang:
            self._drop_all()

    def restore(self) -> None:
        if self.hanging:
            # What was silenced lost bytes mid-protocol: those connections are dead anyway.
            self._drop_all()
        self.cut_off = False
        self.hanging = False

    def _drop_all(self) -> None:
        for writer in (*self._links, *self._held):
            _abort(writer)
        self._links.clear()
        self._held.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off and self.hanging:
            self._held.add(writer)
            with contextlib.suppress(OSError):
                while await reader.read(65536):
                    pass  # swallowed: a partition answers nothing
            return
        if self.cut_off:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self.accepted += 1
        self._links.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.cut_off and self.hanging:
                    continue  # swallowed
                if self.cut_off:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            _abort(sink)
            self._links.discard(sink)


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        transport = writer.transport
        if not transport.is_closing():
            transport.abort()
