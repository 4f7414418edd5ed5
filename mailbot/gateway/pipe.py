"""The MDA pipe gateway: an MTA runs ``mailbot ingest`` with the message on stdin.

The exit code is the whole conversation with the MTA (``sysexits.h``, which Postfix and
Sendmail both honour):

* ``0``  (EX_OK)       — the bytes are committed (or were already stored: a redelivery).
* ``75`` (EX_TEMPFAIL) — the database could not take it; the MTA keeps the message and retries.
* ``65`` (EX_DATAERR)  — permanent: empty input, or larger than ``max_message_bytes``. Retrying
  would give the same answer, so the MTA bounces it to the sender, exactly like the SMTP
  gateway's ``552``. mailbot itself sends nothing.

The Postfix recipe (``main.cf`` and the ``master.cf`` pipe service with ``user=mailbot``,
``flags=q``, ``null_sender=`` and ``${sender}``/``${recipient}``) is in docs/operations.md,
"Postfix in front", where tests/integration/test_postfix.py reads it and runs it with a real
Postfix. Postfix runs the command with no environment and in its queue directory, so settings
come from the system file /etc/mailbot/mailbot.toml. A leading mbox ``From `` line (Postfix's
``F`` flag, local(8)) carries a timestamp and is stripped, below, so redeliveries match.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import BinaryIO

from sqlalchemy import Engine

from mailbot.config import Settings
from mailbot.errors import StoreError
from mailbot.gateway.store import store_message

log = logging.getLogger("mailbot.gateway.pipe")

CHANNEL = "pipe"
EX_OK = os.EX_OK  # 0
EX_DATAERR = os.EX_DATAERR  # 65
EX_TEMPFAIL = os.EX_TEMPFAIL  # 75
READ_CHUNK = 1 << 16

# An mbox envelope line ("From sender date"), not a header: a header name never contains a
# space, and "From:" / "From :" (obsolete syntax) are real headers that must stay.
_FROM_LINE = re.compile(rb"From (?![ \t]*:)[^\n]*\n")


def ingest_stream(
    engine: Engine,
    data: bytes | BinaryIO,
    *,
    envelope_from: str | None,
    envelope_to: Sequence[str],
    settings: Settings | None = None,
    max_bytes: int | None = None,
) -> int:
    """Store one message from a pipe and return the process exit code (0, 65 or 75).

    ``data`` is the message, or a binary stream to read it from (``sys.stdin.buffer``); a
    stream is held in memory only up to ``max_bytes + 1`` bytes, so an oversize message is
    refused without being loaded. The limit is ``max_bytes``, else
    ``settings.max_message_bytes``, else none; it counts the input as delivered (a From_ line
    included). Pass the stream rather than a truncated read when you can: only then is the
    rest of an oversize message drained, and the MTA sees our exit code, not a broken pipe.
    """
    if max_bytes is None and settings is not None:
        max_bytes = settings.max_message_bytes
    raw = data if isinstance(data, bytes) else _read_limited(data, max_bytes)
    refusal = _refusal(raw, max_bytes)
    if refusal is not None:
        log.error("refused: %s", refusal)
        return EX_DATAERR
    raw = strip_from_line(raw)
    try:
        result = store_message(
            engine, raw, channel=CHANNEL, envelope_from=envelope_from, envelope_to=envelope_to
        )
    except StoreError as exc:
        log.error("%s; the MTA will retry", exc)
        return EX_TEMPFAIL
    log.info(
        "stored %d bytes as inbound %d%s",
        len(raw),
        result.inbound_id,
        " (duplicate)" if result.duplicate else "",
    )
    return EX_OK


def strip_from_line(raw: bytes) -> bytes:
    """``raw`` without a leading mbox ``From `` line (local(8) and ``flags=F`` add one)."""
    found = _FROM_LINE.match(raw)
    return raw[found.end() :] if found else raw


def _read_limited(stream: BinaryIO, max_bytes: int | None) -> bytes:
    """All of ``stream``, or its first ``max_bytes + 1`` bytes (enough to know it is too big)."""
    if max_bytes is None:
        return stream.read()
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = stream.read(min(READ_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    # Too big: consume the rest unread, so the MTA sees our exit code and not a broken pipe.
    while stream.read(READ_CHUNK):
        pass
    return b"".join(chunks)


def _refusal(raw: bytes, max_bytes: int | None) -> str | None:
    if max_bytes is not None and len(raw) > max_bytes:
        return f"message larger than the limit of {max_bytes} bytes"
    if not strip_from_line(raw).strip():
        return "empty message"
    return None
