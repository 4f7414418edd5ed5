"""Writing to the outbox, in the writer's transaction: a rendered notice (:func:`enqueue`), many
notices at once as intents (:func:`enqueue_intents`), the automatic-reply counts, and marking
what a DSN names as bounced."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Select, Table, literal, select, true, update
from sqlmodel import Session, SQLModel

from db.dialect import upsert
from db.models import (
    OUTBOUND_BOUNCED,
    OUTBOUND_PENDING,
    AutoreplyCount,
    OutboundMessage,
)
from mailbot.addresses import mailbox_key
from mailbot.clock import utc_now
from mailbot.compose import ComposedMail, normalize_message_id
from mailbot.errors import MailbotError

OUTBOUND: Table = SQLModel.metadata.tables[OutboundMessage.__tablename__]
_AUTOREPLY: Table = SQLModel.metadata.tables[AutoreplyCount.__tablename__]
MAX_ERROR_CHARS = 2000


class OutboxError(MailbotError):
    """An outbox request that cannot be carried out (an unknown status, a retry of a sent row)."""


def enqueue(
    session: Session,
    composed: ComposedMail,
    *,
    kind: str,
    dedupe_key: str,
    recipient: str,
    application_id: int | None = None,
    inbound_id: int | None = None,
    now: datetime | None = None,
    max_bytes: int | None = None,
) -> int | None:
    """Queue ``composed`` in the caller's transaction; the new row's id, or None when
    ``dedupe_key`` is already queued.

    One ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING``: a redelivered or reprocessed cause
    can never queue its notice twice, even with two workers racing (no read-then-write).
    ``max_bytes`` bounds the message as queued (a reply to an outsider): a larger one is a bug
    in its template, raised rather than sent.
    """
    if max_bytes is not None and len(composed.raw) > max_bytes:
        raise OutboxError(
            f"{kind} to {recipient} is {len(composed.raw):,} bytes, over its limit of "
            f"{max_bytes:,}: shorten the template (mailbot.reply_limits)"
        )
    moment = now if now is not None else utc_now()
    values = {
        "created_at": moment,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "application_id": application_id,
        "inbound_id": inbound_id,
        "recipient": recipient.strip(),
        "message_id": composed.message_id,
        "subject": composed.subject,
        "raw": composed.raw,
        "status": OUTBOUND_PENDING,
        "attempts": 0,
        "next_attempt_at": moment,
    }
    statement = (
        upsert(session, OUTBOUND)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OUTBOUND.c.id)
    )
    new_id: int | None = session.execute(statement, values).scalar_one_or_none()
    return new_id


def enqueue_intents(session: Session, rows: Select[*tuple[Any, ...]], *, now: datetime) -> int:
    """Queue notices to be rendered at delivery, in the caller's transaction; rows queued.

    ``rows`` selects ``kind, dedupe_key, application_id, inbound_id, recipient, message_id``
    (by those labels), one row per notice. One ``INSERT … SELECT … ON CONFLICT (dedupe_key)
    DO NOTHING``: as with :func:`enqueue`, a cause processed twice queues nothing twice.
    The kind must be one the deliverer's :data:`IntentRenderer` knows how to render.
    """
    wanted = rows.subquery()
    o = OUTBOUND.c
    moment = literal(now, o.created_at.type)
    source = select(
        moment,
        wanted.c.kind,
        wanted.c.dedupe_key,
        wanted.c.application_id,
        wanted.c.inbound_id,
        wanted.c.recipient,
        wanted.c.message_id,
        literal(OUTBOUND_PENDING, o.status.type),
        literal(0, o.attempts.type),
        moment,
    ).where(true())  # SQLite needs a WHERE before ON CONFLICT in an INSERT … SELECT
    statement = (
        upsert(session, OUTBOUND)
        .from_select(
            [
                o.created_at,
                o.kind,
                o.dedupe_key,
                o.application_id,
                o.inbound_id,
                o.recipient,
                o.message_id,
                o.status,
                o.attempts,
                o.next_attempt_at,
            ],
            source,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return len(session.execute(statement.returning(OUTBOUND.c.id)).all())


def take_autoreply_allowance(session: Session, address: str, day: date, limit: int) -> bool:
    """Count one automatic mail caused by ``address`` on ``day``; True while at most ``limit``.

    Call it in the transaction that enqueues the mail, so a rollback gives the allowance back.
    Replies to a sender go through mailbot.reply_limits, which uses the same counts.
    """
    return count_autoreply(session, address, day) <= limit


def count_autoreply(session: Session, address: str, day: date, *, fold: bool = True) -> int:
    """Add one to ``address``'s count for ``day`` and return the new count.

    The count is per mailbox (``+tag`` removed, case folded: mailbot.addresses.mailbox_key)
    unless ``fold`` is False (a counter that is not an address). An atomic upsert, so two
    workers answering the same robot cannot both take the last allowance.
    """
    key = mailbox_key(parseaddr(address)[1] or address) if fold else address
    statement = (
        upsert(session, _AUTOREPLY)
        .values(address=key, day=day, sent=1)
        .on_conflict_do_update(
            index_elements=["address", "day"], set_={"sent": _AUTOREPLY.c.sent + 1}
        )
        .returning(_AUTOREPLY.c.sent)
    )
    return int(session.execute(statement).scalar_one())


def mark_bounced(session: Session, message_ids: Iterable[str], *, reason: str | None = None) -> int:
    """Mark our messages named in a DSN (ids with or without <>) as bounced; the number marked."""
    wanted = {n for n in (normalize_message_id(m) for m in message_ids) if n}
    if not wanted:
        return 0
    statement = (
        update(OUTBOUND)
        .where(OUTBOUND.c.message_id.in_(sorted(wanted)))
        .where(OUTBOUND.c.status != OUTBOUND_BOUNCED)
        .values(status=OUTBOUND_BOUNCED, last_error=clip_error(reason or "bounced"))
        .returning(OUTBOUND.c.id)
    )
    return len(session.execute(statement).all())


def clip_error(text: str) -> str:
    """An error as stored on the row (``last_error``): at most MAX_ERROR_CHARS."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
