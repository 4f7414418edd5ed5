"""Which stored messages the intake worker takes next: the oldest pending ones, locked for the
transaction that processes them, within a budget of bytes."""

from __future__ import annotations

from sqlmodel import Session, col, select

from db.dialect import skip_locked
from db.models import INBOUND_PENDING, InboundMessage

# Every message of a claimed batch is in memory (its raw bytes) until the batch commits, so
# large messages are claimed fewer at a time: a batch stops before this many bytes, but always
# takes one message. Ten 9.5 MB messages a batch held 95 MB until it committed (bench/memory.py).
CLAIM_MAX_BYTES = 16 * 1024 * 1024


def claim_pending_inbound(
    session: Session, limit: int, max_bytes: int = CLAIM_MAX_BYTES
) -> list[InboundMessage]:
    """Lock the oldest pending messages (up to ``limit``, and up to ``max_bytes`` of them
    unless the first alone is larger) for this transaction.

    Several workers take different messages (:func:`db.dialect.skip_locked`); the rows stay
    claimed until the processing transaction commits (status done) or rolls back (pending
    again), so a crash mid-way loses nothing and repeats nothing. Sizes are read first, so that
    the bytes of messages left for the next batch are never loaded.
    """
    sizes = skip_locked(
        select(InboundMessage.id, InboundMessage.size)
        .where(InboundMessage.status == INBOUND_PENDING)
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )
    chosen: list[int] = []
    total = 0
    for row_id, size in session.exec(sizes):
        assert row_id is not None  # a stored row has its id
        if chosen and total + size > max_bytes:
            break
        chosen.append(row_id)
        total += size
    if not chosen:
        return []
    query = (
        select(InboundMessage)
        .where(col(InboundMessage.id).in_(chosen))
        .order_by(col(InboundMessage.id))
    )
    return list(session.exec(query))
