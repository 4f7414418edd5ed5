"""The intake worker: claims stored messages in order and processes each exactly once.

Mailman's runner is the model: one catch-all at the loop boundary. A message whose processing
raises is moved aside (quarantined, raw bytes kept, error recorded) and the worker goes on;
``mailbot inbound reprocess ID`` puts it back in the queue once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import (
    INBOUND_DONE,
    INBOUND_PENDING,
    INBOUND_QUARANTINED,
    InboundMessage,
)
from db.queries import claim_next_inbound
from mailbot.errors import MailbotError, NotFoundError
from mailbot.intake import IntakeContext, process_message

log = logging.getLogger("mailbot.worker")

# A failure that may pass by itself (lock timeout, a racing worker took the same ID) is retried
# this many times before the message is quarantined.
MAX_TRANSIENT_ATTEMPTS = 3
IDLE_BACKOFF_MAX_SECONDS = 30.0

Clock = Callable[[], datetime]


def utc_clock() -> datetime:
    return datetime.now(UTC)


def process_next(engine: Engine, ctx: IntakeContext, now: datetime) -> int | None:
    """Process the oldest pending message; return its id, or None when the queue is empty."""
    inbound_id: int | None = None
    try:
        with session_scope(engine) as session:
            inbound = claim_next_inbound(session)
            if inbound is None:
                return None
            inbound_id = inbound.id
            inbound.kind = process_message(session, inbound, ctx, now)
            inbound.status = INBOUND_DONE
            inbound.processed_at = now
            inbound.attempts += 1
            inbound.error = None
            session.add(inbound)
        return inbound_id
    except Exception as exc:
        if inbound_id is None:
            raise  # the claim itself failed: a database problem, not this message's
        _record_failure(engine, inbound_id, exc, now)
        return inbound_id


def _record_failure(engine: Engine, inbound_id: int, exc: Exception, now: datetime) -> None:
    detail = "".join(traceback.format_exception(exc)).strip()
    with session_scope(engine) as session:
        query = select(InboundMessage).where(InboundMessage.id == inbound_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        inbound = session.exec(query).one()
        if inbound.status != INBOUND_PENDING:
            return  # another worker settled it meanwhile
        inbound.attempts += 1
        inbound.error = detail
        transient = _is_transient(exc) and inbound.attempts < MAX_TRANSIENT_ATTEMPTS
        if not transient:
            inbound.status = INBOUND_QUARANTINED
            inbound.processed_at = now
            log.error("message %s quarantined: %s", inbound_id, exc)
        else:
            log.warning(
                "message %s failed (attempt %s), will retry: %s", inbound_id, inbound.attempts, exc
            )
        session.add(inbound)


def _is_transient(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError | OperationalError)


def drain(engine: Engine, ctx: IntakeContext, clock: Clock = utc_clock) -> int:
    """Process until the queue is empty; return how many messages were handled."""
    handled = 0
    while process_next(engine, ctx, clock()) is not None:
        handled += 1
    return handled


async def run_worker(
    engine: Engine,
    ctx: IntakeContext,
    stop: asyncio.Event,
    wake: asyncio.Event,
    *,
    clock: Clock = utc_clock,
) -> None:
    """Drain the queue, then sleep until woken (a new message) or the poll interval passes."""
    poll = ctx.settings.worker_poll_seconds
    delay = poll
    while not stop.is_set():
        wake.clear()
        try:
            await asyncio.to_thread(drain, engine, ctx, clock)
            delay = poll
        except Exception:  # the loop boundary: log, back off, keep the process alive
            log.exception("intake worker failed; retrying in %.0f s", delay)
            delay = min(delay * 2, IDLE_BACKOFF_MAX_SECONDS)
        await _wait_any(stop, wake, delay)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# --- operator commands ----------------------------------------------------------------------
def list_inbound(
    session: Session, status: str | None = None, limit: int = 100
) -> list[InboundMessage]:
    query = select(InboundMessage).order_by(col(InboundMessage.id).desc()).limit(limit)
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
