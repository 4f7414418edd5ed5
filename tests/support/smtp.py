"""Real SMTP parts for tests: a free port, a client, a relay sink that records deliveries, and
what the gateway stored."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlmodel
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import Engine

from db.models import InboundMessage

# Every port free_port handed out in this process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one handed out before in this process: tests pick ports
    before the servers that use them start, and the kernel may give a port it just gave back
    again (a gateway's SMTP port once became another process's web port)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


# The gateway's own Received header, three lines (mailbot.gateway.trace), at the very top.
GATEWAY_TRACE = re.compile(
    rb"\AReceived: from [^\r\n]*\r\n\tby [^\r\n]* \(mailbot\) [^\r\n]*\r\n\t[^\r\n]*\r\n"
)


def split_trace(stored: bytes) -> tuple[bytes, bytes]:
    """A message stored by the SMTP gateway: its Received header and the bytes the client
    sent. Fails when the stored bytes do not start with the gateway's header."""
    found = GATEWAY_TRACE.match(stored)
    assert found is not None, f"no gateway Received header on top: {stored[:200]!r}"
    return found.group(0), stored[found.end() :]


def as_sent(stored: bytes) -> bytes:
    """The message as the client sent it, without the gateway's Received header."""
    return split_trace(stored)[1]


def stored_with_trace(engine: Engine) -> list[bytes]:
    """The messages the gateway stored, oldest first, as stored (its Received header on top)."""
    with sqlmodel.Session(engine) as session:
        query = sqlmodel.select(InboundMessage).order_by(sqlmodel.col(InboundMessage.id))
        return [bytes(row.raw or b"") for row in session.exec(query)]


def stored(engine: Engine) -> list[bytes]:
    """The messages the gateway stored, oldest first, as the client sent them."""
    return [as_sent(raw) for raw in stored_with_trace(engine)]


def send(
    port: int, raw: bytes, *, mail_from: str, rcpt_to: list[str] | str, host: str = "127.0.0.1"
) -> dict[str, tuple[int, bytes]]:
    """Send with a real SMTP client; raises smtplib's exceptions on refusal, like a real MTA."""
    with smtplib.SMTP(host, port, timeout=30) as client:
        return client.sendmail(mail_from, rcpt_to, raw)


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SinkHandler:
    """Accepts everything (or answers ``reply`` when set) and keeps what arrived."""

    deliveries: list[Delivery] = field(default_factory=list)
    reply: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.reply is not None:
            return self.reply
        content = envelope.original_content or b""
        with self.lock:
            self.deliveries.append(
                Delivery(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 OK"


class Sink:
    """An aiosmtpd relay sink on a loopback port: what mailbot's outbox talks to in tests."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller: Controller | None = None

    def start(self) -> Sink:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def deliveries(self) -> list[Delivery]:
        with self.handler.lock:
            return list(self.handler.deliveries)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
