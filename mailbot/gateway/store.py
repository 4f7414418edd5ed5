"""Durable storage of one inbound message, shared by every gateway channel.

``store_message`` returns only after the row is committed, so a gateway may say yes (SMTP 250,
pipe exit 0, IMAP move) as soon as it returns. The same bytes delivered again (an MTA retrying
after a lost 250, a pipe re-run, an IMAP rescan) find the existing row through the unique
``sha256`` and get its id back with ``duplicate=True``; no second row is ever written.

The SHA-256 is that of the message as the client handed it over. The SMTP gateway stores its
own ``Received:`` header in front of it (``mailbot.gateway.trace``) and leaves it out of the
hash (``Incoming.trace_length``): that header differs on every delivery attempt, the message
does not. The row keeps the first attempt's header.

Memory: the bytes are handed to the driver as they are (a ``bytearray`` from the gateway is
not copied to ``bytes``). On SQLite the row is inserted with a ``zeroblob`` of the right size
and the bytes written into it through the blob API: binding a parameter would make SQLite
copy them twice (the bound value, then the record it builds).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError

from db.dialect import is_postgresql, is_sqlite
from db.engine import driver_transaction
from db.models import INBOUND_PENDING, InboundMessage
from mailbot.clock import utc_now
from mailbot.errors import StoreError

NULL_SENDER = ""
# Column widths of inbound_message; longer values would make PostgreSQL refuse the row, and a
# refusal here means 451 for ever. Message-ID is only a hint (the SHA-256 is the identity), and a
# sender longer than an SMTP path may be (64 + 1 + 255) is not an address anyway.
MESSAGE_ID_MAX = 998
ENVELOPE_FROM_MAX = 320

# Looked up in the metadata (typed as a Table) rather than through __table__ (untyped).
_TABLE = InboundMessage.metadata.tables["inbound_message"]
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A header field starts a line; folded continuation lines start with a space or a tab. Optional
# blanks before the colon are obsolete syntax (RFC 5322 §4.5) that real mailers still emit.
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class StoreResult:
    inbound_id: int
    duplicate: bool


def envelope_sender(address: str | None) -> str | None:
    """The envelope sender as stored: the null return path ``<>`` becomes ``""``.

    ``""`` (not None) is what classification looks for: mail with a null sender is a bounce or
    an auto-reply and must never be answered. None means the channel did not know the sender.
    """
    if address is None:
        return None
    address = address.strip()
    return NULL_SENDER if address in ("", "<>") else address


def header_block(raw: bytes) -> bytes:
    """The bytes before the first blank line (all of ``raw`` when there is no body)."""
    return raw[: header_end(raw)]


def header_end(raw: bytes | bytearray) -> int:
    """Where the header block of ``raw`` ends (the offset of the first blank line)."""
    if raw.startswith((b"\n", b"\r\n")):
        return 0
    end = _HEADER_END.search(raw)
    return len(raw) if end is None else end.start()


def extract_message_id(raw: bytes | bytearray) -> str | None:
    """The first Message-ID header's value, found without parsing the MIME structure.

    The full parse belongs to the intake worker; here a malformed message must still be stored,
    so this never raises and returns None when there is nothing usable.
    """
    found = _MESSAGE_ID.search(raw, 0, header_end(raw))  # no copy of the header block
    if found is None:
        return None
    # Unfolding = dropping the line breaks; "replace" because a broken 8-bit header must not
    # stop the store (the raw bytes keep the original).
    value = re.sub(rb"\r?\n", b"", found.group(1)).decode("utf-8", errors="replace").strip()
    angle = _ANGLE.search(value)
    if angle is not None:
        value = angle.group(0)
    return value[:MESSAGE_ID_MAX] or None


def store_message(
    engine: Engine,
    raw: bytes | bytearray,
    *,
    channel: str,
    envelope_from: str | None,
    envelope_to: Sequence[str],
    trace_length: int = 0,
) -> StoreResult:
    """Insert ``raw`` as a pending inbound message and commit; raise StoreError on any failure.

    Blocking (it waits for the commit): call it from a worker thread in async code.
    """
    incoming = Incoming(raw, channel, envelope_from, envelope_to, trace_length)
    return store_messages(engine, [incoming])[0]


@dataclass(frozen=True)
class Incoming:
    """One message to store: the bytes and the envelope, as a gateway received them.

    ``raw`` is stored as it is. Its first ``trace_length`` bytes are a trace header the gateway
    put in front (stored, but not part of the message's identity, so not hashed).
    """

    raw: bytes | bytearray
    channel: str
    envelope_from: str | None
    envelope_to: Sequence[str]
    trace_length: int = 0

    @property
    def sha256(self) -> str:
        """The identity of the message as received: its SHA-256 without the trace header."""
        with memoryview(self.raw) as view:
            return hashlib.sha256(view[self.trace_length :]).hexdigest()


def store_messages(engine: Engine, batch: Sequence[Incoming]) -> list[StoreResult]:
    """Store several messages in ONE transaction and commit (group commit).

    One fsync for the whole batch instead of one per message: what lets the SMTP gateway keep
    up with many concurrent sessions while still answering 250 only after the commit. The
    same bytes twice in one batch are one row (the second insert finds the first).

    ON CONFLICT DO NOTHING instead of insert-then-catch-IntegrityError: a failed statement
    would abort the whole PostgreSQL transaction, and a check-then-insert would race. On
    PostgreSQL a concurrent insert of the same bytes makes this wait for the other
    transaction; the SELECT after it (a new snapshot under READ COMMITTED) then sees its row.
    On SQLite BEGIN IMMEDIATE serialises writers, so the same holds.
    """
    rows = [_row_values(incoming) for incoming in batch]
    dialect = engine.dialect
    # The driver's own errors come straight from its cursor; TimeoutError from the turnstile.
    failures: tuple[type[Exception], ...] = (
        SQLAlchemyError,
        TimeoutError,
        *_driver_errors(dialect),
    )
    try:
        with driver_transaction(engine, urgent=True) as cursor:
            return _insert_many_or_find(cursor, dialect, rows)
    except failures as exc:
        raise StoreError(f"could not store the inbound messages: {_describe(exc)}") from exc


def _driver_errors(dialect: Dialect) -> tuple[type[Exception], ...]:
    error = getattr(dialect.loaded_dbapi, "Error", None)
    return (error,) if isinstance(error, type) and issubclass(error, Exception) else ()


def _describe(exc: Exception) -> str:
    # The driver's own first line ("no such table", "disk I/O error", "connection refused"):
    # enough for the operator, and unlike str(exc) it carries no SQL parameters, which would
    # put message bytes and addresses into the logs and into the MTA's deferral notice.
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else 'no detail'}"


def _row_values(incoming: Incoming) -> dict[str, Any]:
    sender = envelope_sender(incoming.envelope_from)
    return {
        "received_at": utc_now(),
        "channel": incoming.channel,
        "envelope_from": sender[:ENVELOPE_FROM_MAX] if sender is not None else None,
        "envelope_to": list(incoming.envelope_to),
        "message_id": extract_message_id(incoming.raw),
        "sha256": incoming.sha256,
        "size": len(incoming.raw),
        "raw": incoming.raw,
        "status": INBOUND_PENDING,
        "attempts": 0,
    }


def _insert_many_or_find(
    cursor: Any, dialect: Dialect, rows: list[dict[str, Any]]
) -> list[StoreResult]:
    """One multi-row INSERT for all rows, then one SELECT for the ones already there.

    Driver SQL on a driver cursor, with values converted by the columns' own SQLAlchemy types:
    the SMTP gateway's writer thread runs this for every batch while the event loop serves the
    sessions, and each bit of Python here is taken from the loop's share of the GIL (of which
    SQLAlchemy's connection, compiler and result machinery took much).
    """
    # Driver SQL, not SQLAlchemy Core: the gateway alone 660-710 -> 810-845/s (bench/gateway.py)
    converters = _converters(dialect)
    cursor.execute(
        _batch_insert_sql(dialect, len(rows)),
        tuple(convert(row[name]) for row in rows for name, convert in converters),
    )
    new = {sha: row_id for row_id, sha in cursor.fetchall()}
    if is_sqlite(dialect):
        _write_blobs(cursor, rows, new)
    missing = sorted({row["sha256"] for row in rows} - set(new))
    old: dict[str, int] = {}
    if missing:
        cursor.execute(_find_sql(dialect, len(missing)), tuple(missing))
        old = {sha: row_id for sha, row_id in cursor.fetchall()}
    results: list[StoreResult] = []
    first_seen: set[str] = set()
    for row in rows:
        sha = row["sha256"]
        if sha in new and sha not in first_seen:
            first_seen.add(sha)
            results.append(StoreResult(inbound_id=new[sha], duplicate=False))
        else:  # stored before, or twice in this very batch
            results.append(StoreResult(inbound_id=new.get(sha) or old[sha], duplicate=True))
    return results


def _write_blobs(cursor: Any, rows: list[dict[str, Any]], new: dict[str, int]) -> None:
    """SQLite: write each new row's bytes into the zeroblob its INSERT made (no copies)."""
    # One 10 MB message: +21 MB with the bytes bound as a parameter, +0 MB so (bench/memory.py)
    written: set[str] = set()
    for row in rows:
        sha = row["sha256"]
        if sha in new and sha not in written:
            written.add(sha)
            with cursor.connection.blobopen(_TABLE.name, "raw", new[sha]) as blob:
                blob.write(row["raw"])


# The columns a stored message fills, in the order of the driver SQL's placeholders.
_COLUMNS = (
    "received_at",
    "channel",
    "envelope_from",
    "envelope_to",
    "message_id",
    "sha256",
    "size",
    "raw",
    "status",
    "attempts",
)


_JSON_COLUMN = "envelope_to"
_BLOB_COLUMN = "raw"


def _json_text(value: Any) -> str:
    return json.dumps(value)


def _processor(name: str, dialect: Dialect) -> Callable[[Any], Any]:
    process = _TABLE.c[name].type.bind_processor(dialect)
    return process if process is not None else _identity


def _identity(value: Any) -> Any:
    return value


_Converter = tuple[str, Callable[[Any], Any]]


def _converters(dialect: Dialect) -> list[_Converter]:
    """Each column's bind conversion for this dialect (e.g. datetime → SQLite's text form),
    exactly what SQLAlchemy itself would apply; the JSON column is serialised here for both
    (PostgreSQL gets a ``::json`` cast on its placeholder)."""
    return [(name, _converter(name, dialect)) for name in _COLUMNS]


def _converter(name: str, dialect: Dialect) -> Callable[[Any], Any]:
    if name == _JSON_COLUMN:
        return _json_text
    if name == _BLOB_COLUMN and is_sqlite(dialect):
        return len  # the size of the zeroblob the bytes are then written into
    return _processor(name, dialect)


def _batch_insert_sql(dialect: Dialect, count: int) -> str:
    """``INSERT … VALUES (…), (…) ON CONFLICT (sha256) DO NOTHING RETURNING id, sha256`` for
    ``count`` rows, in the driver's placeholder style (SQLite ``?``, psycopg ``%s``)."""
    mark = _placeholder(dialect)
    sqlite = is_sqlite(dialect)
    special = {
        _JSON_COLUMN: mark if sqlite else f"{mark}::json",
        _BLOB_COLUMN: f"zeroblob({mark})" if sqlite else mark,
    }
    marks = [special.get(name, mark) for name in _COLUMNS]
    one_row = "(" + ", ".join(marks) + ")"
    return (
        f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) VALUES "
        + ", ".join([one_row] * count)
        + " ON CONFLICT (sha256) DO NOTHING RETURNING id, sha256"
    )


def _find_sql(dialect: Dialect, count: int) -> str:
    marks = ", ".join([_placeholder(dialect)] * count)
    return f"SELECT sha256, id FROM {_TABLE.name} WHERE sha256 IN ({marks})"


def _placeholder(dialect: Dialect) -> str:
    if not (is_sqlite(dialect) or is_postgresql(dialect)):
        raise StoreError(f"inbound storage supports SQLite and PostgreSQL, not {dialect.name}")
    return "?" if dialect.paramstyle == "qmark" else "%s"


__all__ = [
    "Incoming",
    "StoreResult",
    "envelope_sender",
    "extract_message_id",
    "header_block",
    "store_message",
    "store_messages",
]
