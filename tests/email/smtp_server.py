"""A real SMTP server on loopback (aiosmtpd) that records what it receives."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class RecordingHandler:
    messages: list[Message] = field(default_factory=list)
    # Answer this many DATA commands with a temporary failure before accepting.
    fail_first: int = 0

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 try again later"
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.messages.append(message_from_bytes(raw))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(fail_first: int = 0) -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler(fail_first=fail_first)
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
