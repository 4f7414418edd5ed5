"""Replies as a person writes them: answer on top, the original quoted below."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime


def reply_address(message: EmailMessage) -> str:
    return str(message["Reply-To"].addresses[0].addr_spec)


def reply_to(
    message: EmailMessage,
    *,
    sender: str,
    body: str,
    to: str | None = None,
    quote: bool = True,
    headers_on_top: list[tuple[str, str]] | None = None,
) -> bytes:
    """A reply to ``message`` from ``sender``: ``body``, then the original quoted with ``>``."""
    original = message.get_body(preferencelist=("plain",))
    quoted = ""
    if quote and original is not None:
        text = str(original.get_content()).replace("\r\n", "\n")
        quoted = "\n\n2026年11月27日(金) 10:05 mailbot <apply@mailbot.localhost>:\n" + "\n".join(
            "> " + line for line in text.splitlines()
        )
    reply = EmailMessage()
    for name, value in headers_on_top or []:
        reply[name] = value
    reply["From"] = sender
    reply["To"] = to or reply_address(message)
    reply["Subject"] = "Re: " + str(message["Subject"])
    reply["Message-ID"] = f"<{uuid.uuid4().hex}@example.co.jp>"
    reply["In-Reply-To"] = str(message["Message-ID"])
    reply["Date"] = format_datetime(datetime(2026, 11, 27, 2, 0, tzinfo=UTC))
    reply.set_content(body + quoted, cte="base64")  # as real mailers do: no long 8-bit lines
    return reply.as_bytes(policy=SMTP)  # CRLF line ends, as on the wire
