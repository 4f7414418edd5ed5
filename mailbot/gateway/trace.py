"""The gateway's own ``Received:`` trace header (RFC 5321 §4.4), written and recognised.

The SMTP gateway prepends one to every message it stores, so the stored bytes say who handed
the message over (the client's HELO name and IP address), to which host, how (``ESMTP``,
``ESMTPS`` with TLS, RFC 3848) and when::

    Received: from mx.example.net ([192.0.2.25])
            by mailbot.example.jp (mailbot) with ESMTPS id 3f2a9c0b1d4e5f60;
            Fri, 27 Nov 2026 10:00:00 +0900

It is also the trust boundary for Authentication-Results (``mailbot.authres``): nothing a
sender writes can stand above it, so the worker reads the client's address from it and counts
the headers below it only when that client is a trusted relay.

The header is not part of the message's identity: the SHA-256 that recognises a redelivery is
taken over the message as the client sent it (``mailbot.gateway.store``). A retrying MTA
sends the same bytes again, but this header would differ (a new date and id, perhaps another
of the sender's MX hosts), so hashing it would store every retry twice.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from email.utils import format_datetime
from ipaddress import IPv6Address, ip_address

HEADER_NAME = "Received"
MARK = "(mailbot)"
HELO_MAX = 255
# What is kept of a client's HELO name: the characters of host names and address literals.
# Anything else (blanks, parentheses, semicolons, 8-bit) could make the header ambiguous.
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
_OWN = re.compile(
    r"^\s*from\s+\S+\s+\(\[(?:IPv6:)?(?P<ip>[0-9A-Fa-f.:]+)\]\)\s+"
    r"by\s+\S+\s+\(mailbot\)\s+with\s+E?SMTPS?\s+id\s+[0-9a-f]+\s*;",
)


def new_trace_id() -> str:
    return secrets.token_hex(8)


def received_header(
    *,
    helo: str | None,
    client: str,
    by: str,
    esmtp: bool,
    tls: bool,
    trace_id: str,
    when: datetime,
) -> bytes:
    """The header line (folded, CRLF-terminated) for one message received over SMTP."""
    protocol = ("ESMTPS" if tls else "ESMTP") if esmtp else "SMTP"
    name = _HELO_UNSAFE.sub("", helo or "")[:HELO_MAX] or "unknown"
    text = (
        f"{HEADER_NAME}: from {name} ({_literal(client)})\r\n"
        f"\tby {by} {MARK} with {protocol} id {trace_id};\r\n"
        f"\t{format_datetime(when)}\r\n"
    )
    return text.encode("ascii", errors="replace")


def _literal(client: str) -> str:
    """``[192.0.2.1]``, ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3); ``[unknown]`` otherwise."""
    try:
        address = ip_address(client)
    except ValueError:
        return "[unknown]"
    return f"[IPv6:{address}]" if isinstance(address, IPv6Address) else f"[{address}]"


def own_received_client(value: str) -> str | None:
    """The client address recorded in a Received header value that this gateway wrote, or
    None when the value is not in its form."""
    found = _OWN.match(value.replace("\r\n", " ").replace("\n", " "))
    if found is None:
        return None
    try:
        return str(ip_address(found.group("ip")))
    except ValueError:
        return None
