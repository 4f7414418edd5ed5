"""What ``mailbot outbox list / show / retry`` shows and does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from db.models import (
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_STATUSES,
    OutboundMessage,
)
from mailbot.clock import utc_now
from mailbot.errors import NotFoundError
from mailbot.outbox.queue import OUTBOUND, OutboxError


def list_outbox(
    session: Session, status: str | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows for ``mailbot outbox list``, oldest first, JSON-ready (times as ISO 8601 UTC)."""
    if status is not None and status not in OUTBOUND_STATUSES:
        raise OutboxError(
            f"unknown outbox status {status!r}; use one of {', '.join(OUTBOUND_STATUSES)}"
        )
    statement = select(OUTBOUND).order_by(OUTBOUND.c.id)
    if status is not None:
        statement = statement.where(OUTBOUND.c.status == status)
    if limit is not None:
        statement = statement.limit(limit)
    return [_summary(row._mapping) for row in session.execute(statement)]


def _summary(row: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row["id"],
        "status": row["status"],
        "kind": row["kind"],
        "recipient": row["recipient"],
        "subject": row["subject"],
        "message_id": row["message_id"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "last_error": row["last_error"],
        "created_at": iso(row["created_at"]),
        "sent_at": iso(row["sent_at"]),
        "requeued_at": iso(row["requeued_at"]),
        "raw_removed_at": iso(row["raw_removed_at"]),
        "application_id": row["application_id"],
        "inbound_id": row["inbound_id"],
        "dedupe_key": row["dedupe_key"],
    }


def outbox_row(session: Session, id: int) -> dict[str, Any]:
    """One row for ``mailbot outbox show``, as :func:`list_outbox` shows it."""
    row = session.execute(select(OUTBOUND).where(OUTBOUND.c.id == id)).first()
    if row is None:
        raise NotFoundError(f"there is no outbox message {id} (see `mailbot outbox list`)")
    return _summary(row._mapping)


def _requeue(now: datetime | None) -> dict[str, Any]:
    # A fresh set of attempts, due at once, and a fresh give-up time counted from now.
    moment = now or utc_now()
    return {
        "status": OUTBOUND_PENDING,
        "attempts": 0,
        "next_attempt_at": moment,
        "requeued_at": moment,
    }


def retry_failed(session: Session, *, now: datetime | None = None) -> list[int]:
    """Queue every failed message again (``mailbot outbox retry --failed``); their ids."""
    statement = (
        update(OUTBOUND)
        .where(OUTBOUND.c.status == OUTBOUND_FAILED)
        .values(**_requeue(now))
        .returning(OUTBOUND.c.id)
    )
    return sorted(row.id for row in session.execute(statement))


def retry_outbox(session: Session, id: int, *, now: datetime | None = None) -> None:
    """Give a failed message a fresh set of attempts, due at once (``mailbot outbox retry``)."""
    statement = (
        update(OUTBOUND)
        .where(OUTBOUND.c.id == id, OUTBOUND.c.status == OUTBOUND_FAILED)
        .values(**_requeue(now))
        .returning(OUTBOUND.c.id)
    )
    if session.execute(statement).first() is not None:
        return
    row = session.get(OutboundMessage, id)
    if row is None:
        raise NotFoundError(f"there is no outbox message {id} (see `mailbot outbox list`)")
    raise OutboxError(f"outbox message {id} is {row.status}; only failed messages can be retried")
