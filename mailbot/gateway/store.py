"""Durable storage of one inbound message, shared by every gateway channel.

``store_message`` returns only after the row is committed, so a gateway may say yes (SMTP 250,
pipe exit 0, IMAP move) as soon as it returns. The same bytes delivered again (an MTA retrying
after a lost 250, a pipe re-run, an IMAP rescan) find the existing row through the unique
``sha256`` and get its id back with ``duplicate=True``; no second row is ever written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from db.models import INBOUND_PENDING, InboundMessage, utcnow
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
    if raw.startswith((b"\n", b"\r\n")):
        return b""
    end = _HEADER_END.search(raw)
    return raw if end is None else raw[: end.start()]


def extract_message_id(raw: bytes) -> str | None:
    """The first Message-ID header's value, found without parsing the MIME structure.

    The full parse belongs to the intake worker; here a malformed message must still be stored,
    so this never raises and returns None when there is nothing usable.
    """
    found = _MESSAGE_ID.search(header_block(raw))
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
    raw: bytes,
    *,
    channel: str,
    envelope_from: str | None,
    envelope_to: Sequence[str],
) -> StoreResult:
    """Insert ``raw`` as a pending inbound message and commit; raise StoreError on any failure.

    Blocking (it waits for the commit): call it from a worker thread in async code.
    """
    values = _row_values(raw, channel, envelope_from, envelope_to)
    try:
        with engine.begin() as connection:  # commits on leaving the block, before we return
            return _insert_or_find(connection, values)
    except SQLAlchemyError as exc:
        raise StoreError(f"could not store the inbound message: {_describe(exc)}") from exc


@dataclass(frozen=True)
class Incoming:
    """One message to store: the bytes and the envelope, as a gateway received them."""

    raw: bytes
    channel: str
    envelope_from: str | None
    envelope_to: Sequence[str]


def store_messages(engine: Engine, batch: Sequence[Incoming]) -> list[StoreResult]:
    """Store several messages in ONE transaction and commit (group commit).

    One fsync for the whole batch instead of one per message: what lets the SMTP gateway keep
    up with many concurrent sessions while still answering 250 only after the commit. The
    same bytes twice in one batch are one row (the second insert finds the first).
    """
    rows = [_row_values(i.raw, i.channel, i.envelope_from, i.envelope_to) for i in batch]
    try:
        with engine.begin() as connection:
            return _insert_many_or_find(connection, rows)
    except SQLAlchemyError as exc:
        raise StoreError(f"could not store the inbound messages: {_describe(exc)}") from exc


def _describe(exc: SQLAlchemyError) -> str:
    # The driver's own first line ("no such table", "disk I/O error", "connection refused"):
    # enough for the operator, and unlike str(exc) it carries no SQL parameters, which would
    # put message bytes and addresses into the logs and into the MTA's deferral notice.
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else 'no detail'}"


def _row_values(
    raw: bytes, channel: str, envelope_from: str | None, envelope_to: Sequence[str]
) -> dict[str, Any]:
    sender = envelope_sender(envelope_from)
    return {
        "received_at": utcnow(),
        "channel": channel,
        "envelope_from": sender[:ENVELOPE_FROM_MAX] if sender is not None else None,
        "envelope_to": list(envelope_to),
        "message_id": extract_message_id(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size": len(raw),
        "raw": raw,
        "status": INBOUND_PENDING,
        "attempts": 0,
    }


def _insert_or_find(connection: Connection, values: dict[str, Any]) -> StoreResult:
    # ON CONFLICT DO NOTHING instead of insert-then-catch-IntegrityError: a failed statement
    # would abort the whole PostgreSQL transaction, and a check-then-insert would race. On
    # PostgreSQL a concurrent insert of the same bytes makes this wait for the other
    # transaction; the SELECT after it (a new snapshot under READ COMMITTED) then sees its row.
    # On SQLite BEGIN IMMEDIATE serialises writers, so the same holds.
    statement = (
        _insert(connection)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_TABLE.c.sha256])
    )
    inserted = connection.execute(statement.returning(_TABLE.c.id)).scalar_one_or_none()
    if inserted is not None:
        return StoreResult(inbound_id=inserted, duplicate=False)
    existing = connection.execute(
        select(_TABLE.c.id).where(_TABLE.c.sha256 == values["sha256"])
    ).scalar_one()
    return StoreResult(inbound_id=existing, duplicate=True)


def _insert_many_or_find(connection: Connection, rows: list[dict[str, Any]]) -> list[StoreResult]:
    """The batch form of :func:`_insert_or_find`: one prepared INSERT for all rows (SQLAlchemy
    sends it as multi-row VALUES with RETURNING), then one SELECT for the ones already there.
    Building a statement per message cost more than the commit it shares."""
    statement = (
        _insert(connection)
        .on_conflict_do_nothing(index_elements=[_TABLE.c.sha256])
        .returning(_TABLE.c.id, _TABLE.c.sha256)
    )
    new = {sha: row_id for row_id, sha in connection.execute(statement, rows)}
    missing = {row["sha256"] for row in rows} - set(new)
    old: dict[str, int] = {}
    if missing:
        query = select(_TABLE.c.sha256, _TABLE.c.id).where(_TABLE.c.sha256.in_(missing))
        old = {sha: row_id for sha, row_id in connection.execute(query)}
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


def _insert(connection: Connection) -> postgresql.Insert | sqlite.Insert:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_TABLE)
    if dialect == "sqlite":
        return sqlite.insert(_TABLE)
    raise StoreError(f"inbound storage supports SQLite and PostgreSQL, not {dialect}")


__all__ = [
    "Incoming",
    "StoreResult",
    "envelope_sender",
    "extract_message_id",
    "header_block",
    "store_message",
    "store_messages",
]
