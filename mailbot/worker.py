"""The intake worker: claims stored messages in order and processes each exactly once.

Mailman's runner is the model: one catch-all at the loop boundary. A message whose processing
raises (the parser cannot read it, a bug, a database error) is moved aside (quarantined, raw
bytes kept, error recorded; never marked done) and the worker goes on; a known sender is told
that it could not be read. ``mailbot inbound reprocess ID`` puts it back in the queue once the
cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from datetime import datetime
from typing import cast

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import QueryableAttribute, defer
from sqlmodel import Session, col, select

from db.engine import session_scope, urgent_writer_waited
from db.models import (
    INBOUND_DONE,
    INBOUND_PENDING,
    INBOUND_QUARANTINED,
    InboundMessage,
)
from mailbot.clock import Clock, utc_now, wait_any
from mailbot.errors import MailbotError, NotFoundError
from mailbot.inbound_claim import claim_pending_inbound
from mailbot.intake import IntakeContext, answer_unreadable, process_message
from mailbot.logs import log_context

log = logging.getLogger("mailbot.worker")

# A failure that may pass by itself (lock timeout, a racing worker took the same ID) is retried
# this many times before the message is quarantined.
MAX_TRANSIENT_ATTEMPTS = 3
IDLE_BACKOFF_MAX_SECONDS = 30.0
# Messages claimed per processing transaction, at most.
BATCH = 10
# A transaction takes no further message once it has run this long: on SQLite it holds the
# one write lock throughout, and the gateway's next commit (the 250s of every session waiting)
# queues behind it. Ten messages a transaction kept `serve`'s gateway at 0.04-0.06 x a bare
# SMTP sink while its worker drained; 5 ms (one message) gave 0.15 x but cost end to end a
# fifth (a commit per message); 15 ms gives 0.13 x and end to end as before
# (bench/gateway.py, bench/intake.py; docs/performance.md).
TRANSACTION_BUDGET_SECONDS = 0.015
# While mail arrives, intake first (SQLite, whose one write lock the gateway's commits share
# with the worker's): after a transaction for which the gateway waited, the worker gives way for
# four times that transaction's length, and its next transaction takes one message. The worker
# keeps at least a fifth of the time. Giving way at all took `serve`'s 250s from 0.11-0.14 x a
# bare sink to 0.25-0.43 x while it drained, and the gateway as its own process from
# 0.22-0.23 x to 0.37-0.44 x; end to end stayed the same (the worker does the same work, later).
# Four times instead of twice (2026-12-07, 3,000 messages a case; five runs with twice, six
# with four times): serve 0.38-0.46 x against 0.24-0.33 x, split 0.41-0.60 x against
# 0.36-0.45 x, end to end the same (bench/gateway.py, bench/intake.py; docs/performance.md
# section 1).
GIVE_WAY = 4.0


def process_batch(engine: Engine, ctx: IntakeContext, now: datetime, limit: int = BATCH) -> int:
    """Process the oldest pending messages (up to ``limit``) in one transaction.

    Each message runs inside its own SAVEPOINT: one that raises is rolled back alone and
    recorded (quarantined, or left pending for a transient error), and the rest of the batch
    goes on. Messages are taken one after another until ``TRANSACTION_BUDGET_SECONDS`` have
    passed (always at least one); those claimed but not reached stay pending for the next
    transaction. The batch commits once, and a crash before that commit leaves every message
    of the batch pending, to be processed again from scratch: nothing lost, nothing done
    twice. Returns how many messages were handled.
    """
    with session_scope(engine) as session:
        began = time.monotonic()
        claimed = claim_pending_inbound(session, limit)
        handled = 0
        for inbound in claimed:
            if handled and time.monotonic() - began > TRANSACTION_BUDGET_SECONDS:
                break  # the rest wait for the next transaction (on PostgreSQL: unlocked)
            handled += 1
            try:
                with session.begin_nested(), log_context(inbound_id=inbound.id):
                    kind = process_message(session, inbound, ctx, now)
            except Exception as exc:  # the loop boundary: whatever it was, the message is kept
                _record_failure(inbound, exc, now)
                if inbound.status == INBOUND_QUARANTINED and not isinstance(exc, SQLAlchemyError):
                    _tell_sender(session, inbound, ctx, now)
            else:
                inbound.kind = kind
                inbound.status = INBOUND_DONE
                inbound.processed_at = now
                inbound.attempts += 1
                inbound.error = None
            session.add(inbound)
        return handled


def _record_failure(inbound: InboundMessage, exc: Exception, now: datetime) -> None:
    inbound.attempts += 1
    inbound.error = "".join(traceback.format_exception(exc)).strip()
    if _is_transient(exc) and inbound.attempts < MAX_TRANSIENT_ATTEMPTS:
        log.warning(
            "message %s failed (attempt %s), will retry: %s",
            inbound.id,
            inbound.attempts,
            exc,
            extra={"inbound_id": inbound.id},
        )
        return
    inbound.status = INBOUND_QUARANTINED
    inbound.processed_at = now
    log.error("message %s quarantined: %s", inbound.id, exc, extra={"inbound_id": inbound.id})


def _tell_sender(
    session: Session, inbound: InboundMessage, ctx: IntakeContext, now: datetime
) -> None:
    """A known sender hears that their message could not be read (a database error is ours to
    fix, and the message is reprocessed then, so nobody is told). In a savepoint of its own:
    a failure here leaves the quarantine as it is, and is logged."""
    try:
        with session.begin_nested():
            told = answer_unreadable(session, inbound, ctx, now)
    except Exception:
        log.exception("message %s: could not tell its sender that it was not read", inbound.id)
    else:
        if told:
            log.info("message %s: its sender was told that it could not be read", inbound.id)


def _is_transient(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError | OperationalError)


def drain(engine: Engine, ctx: IntakeContext, clock: Clock = utc_now) -> int:
    """Process until the queue is empty; return how many messages were handled."""
    handled = 0
    while batch := process_batch(engine, ctx, clock()):
        handled += batch
    return handled


def process_then_give_way(
    engine: Engine, ctx: IntakeContext, now: datetime, limit: int = BATCH
) -> tuple[int, float]:
    """One batch, and how long to give way afterwards: GIVE_WAY times the batch's length when
    an urgent writer (the gateway storing mail) waited for its transaction, else 0."""
    began = time.monotonic()
    handled = process_batch(engine, ctx, now, limit)
    if handled and urgent_writer_waited(engine):  # asked in the thread that committed it
        return handled, (time.monotonic() - began) * GIVE_WAY
    return handled, 0.0


async def run_worker(
    engine: Engine,
    ctx: IntakeContext,
    stop: asyncio.Event,
    wake: asyncio.Event,
    *,
    clock: Clock = utc_now,
    processed: asyncio.Event | None = None,
) -> None:
    """Process batches until the queue is empty, then sleep until woken (a new message) or
    the poll interval passes; after a batch the gateway waited for, pause (see GIVE_WAY) and
    take one message next. ``processed`` is set after each committed batch (it wakes the
    outbox, which has new notices to send)."""
    poll = ctx.settings.worker_poll_seconds
    delay = poll
    give_way = 0.0
    while not stop.is_set():
        wake.clear()
        limit = 1 if give_way else BATCH
        try:
            handled, give_way = await asyncio.to_thread(
                process_then_give_way, engine, ctx, clock(), limit
            )
            delay = poll
        except Exception:  # the loop boundary: log, back off, keep the process alive
            log.exception("intake worker failed; retrying in %.0f s", delay)
            delay = min(delay * 2, IDLE_BACKOFF_MAX_SECONDS)
            handled, give_way = 0, 0.0
        if handled:
            log.info("processed %d message(s)", handled)
            if processed is not None:
                processed.set()
            if give_way:
                await wait_any(stop, timeout=give_way)
            continue
        await wait_any(stop, wake, timeout=delay)


# --- operator commands ----------------------------------------------------------------------
def list_inbound(
    session: Session, status: str | None = None, limit: int = 100
) -> list[InboundMessage]:
    # The raw bytes (up to MAILBOT_MAX_MESSAGE_BYTES each) are never listed: not loaded either.
    query = (
        select(InboundMessage)
        .options(defer(cast(QueryableAttribute[bytes], InboundMessage.raw)))
        .order_by(col(InboundMessage.id).desc())
        .limit(limit)
    )
    if status:
        query = query.where(InboundMessage.status == status)
    return list(session.exec(query))


def get_inbound(session: Session, inbound_id: int) -> InboundMessage:
    inbound = session.get(InboundMessage, inbound_id)
    if inbound is None:
        raise NotFoundError(f"no inbound message {inbound_id}")
    return inbound


def requeue(session: Session, inbound_id: int) -> InboundMessage:
    """Put a quarantined message back in the queue (after fixing what made it fail)."""
    inbound = get_inbound(session, inbound_id)
    if inbound.status != INBOUND_QUARANTINED:
        raise MailbotError(
            f"message {inbound_id} is {inbound.status}, not quarantined; only quarantined "
            "messages can be reprocessed"
        )
    inbound.status = INBOUND_PENDING
    inbound.attempts = 0
    session.add(inbound)
    return inbound
