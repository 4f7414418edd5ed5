"""Delivering due rows: claim (rendering intents), send through a transport outside any
transaction, record; retries with backoff until given up; the service loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from db.dialect import skip_locked
from db.engine import session_scope
from db.models import (
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_SENT,
    OutboundMessage,
)
from mailbot.clock import Clock, as_utc, utc_now, wait_any
from mailbot.config import Settings
from mailbot.logs import log_context
from mailbot.outbox.queue import OUTBOUND, OutboxError, clip_error
from mailbot.outbox.transports import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    Transport,
    make_transport,
)

log = logging.getLogger("mailbot.outbox")

# How long a claimed row belongs to its claimer. Sending stops at half the lease (see
# deliver_due), so a slow batch never runs into rows another process may claim again.
LEASE = timedelta(minutes=1)  # a crashed sender's claims come back after this
RECORD_EVERY = 1
# Retries are at most this far apart (MAILBOT_OUTBOX_MAX_BACKOFF_SECONDS may lower it): a relay
# that comes back gets the queue within the hour, however long it was away.
MAX_BACKOFF = timedelta(hours=1)
MAX_IDLE_AFTER_ERRORS_SECONDS = 60.0

# Renders an intent row in the caller's transaction (sets ``raw`` and ``subject``); raises when
# it cannot. Given by the caller (mailbot.notify.intent_renderer), so the outbox knows how to
# store and send a notice, and the notices know how to queue one, without knowing each other.
IntentRenderer = Callable[[Session, OutboundMessage, datetime], None]


def next_attempt(
    now: datetime,
    attempts: int,
    backoff_seconds: float,
    max_backoff_seconds: float = MAX_BACKOFF.total_seconds(),
) -> datetime:
    """When to try again after ``attempts`` failed tries: backoff·2^(attempts−1), capped."""
    exponent = min(max(attempts - 1, 0), 64)  # beyond 2**64 the cap has long applied
    delay = min(backoff_seconds * 2.0**exponent, max_backoff_seconds)
    return now + timedelta(seconds=delay)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is retried, and when a notice is given up (marked failed).

    A notice is given up after ``give_up_after`` since it was queued (or re-queued by an
    operator), as MTAs give up after days; ``max_attempts``, when set, also ends it sooner.
    """

    backoff_seconds: float = 30.0
    max_backoff_seconds: float = MAX_BACKOFF.total_seconds()
    give_up_after: timedelta | None = None
    max_attempts: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            backoff_seconds=settings.outbox_backoff_seconds,
            max_backoff_seconds=settings.outbox_max_backoff_seconds,
            give_up_after=timedelta(hours=settings.outbox_give_up_hours),
            max_attempts=settings.outbox_max_attempts,
        )

    def gives_up(self, mail: OutboundMessage, now: datetime) -> bool:
        if self.max_attempts is not None and mail.attempts >= self.max_attempts:
            return True
        queued = mail.requeued_at or mail.created_at
        return self.give_up_after is not None and now - as_utc(queued) >= self.give_up_after

    def next_attempt(self, now: datetime, attempts: int) -> datetime:
        return next_attempt(now, attempts, self.backoff_seconds, self.max_backoff_seconds)


async def deliver_due(
    engine: Engine,
    transport: Transport,
    *,
    now: datetime,
    max_attempts: int | None = None,
    backoff_seconds: float = 30.0,
    # End to end 72-80 requests/s, 51 with one row a claim, the same with 10 (bench/intake.py)
    batch: int = 50,
    lease: timedelta = LEASE,
    render: IntentRenderer | None = None,
    policy: RetryPolicy | None = None,
) -> int:
    """Send the pending rows due at ``now`` (at most ``batch``); the number sent.

    Failed attempts are retried and given up by ``policy`` (default: ``backoff_seconds``
    doubling up to an hour apart, and never given up unless ``max_attempts`` is set).

    With ``render`` (as :func:`run_outbox` runs it) intents are rendered when claimed and
    then sent; without, only rows rendered already are claimed, and intents wait for a
    deliverer that can render them.
    """
    if now.utcoffset() is None:
        raise OutboxError("deliver_due() needs an aware datetime")
    if policy is None:
        policy = RetryPolicy(backoff_seconds=backoff_seconds, max_attempts=max_attempts)
    claimed, unrendered = await asyncio.to_thread(_claim, engine, now, batch, lease, render)
    # Rows are sent one after another; stop at half the lease so that no row is still being
    # sent when its lease runs out and another process may claim it.
    deadline = time.monotonic() + lease.total_seconds() / 2
    sent = 0
    # A row that could not be rendered had its attempt: recorded like a failed send.
    outcomes: list[tuple[OutboundMessage, DeliveryError | None]] = list(unrendered)
    for index, mail in enumerate(claimed):
        if time.monotonic() > deadline:
            await asyncio.to_thread(_release, engine, claimed[index:], now)
            break
        error = await _attempt(transport, mail)
        outcomes.append((mail, error))
        sent += error is None
        # A Maildir round in one commit: end to end 76 -> 86 requests/s (bench/intake.py (c))
        if len(outcomes) >= RECORD_EVERY and not transport.idempotent:
            # Recorded as soon as sent: a crash can then re-send (same Message-ID, after the
            # lease) only the one notice that was in flight. Raising RECORD_EVERY shares one
            # commit among several sends, at the price of re-sending that many after a crash.
            await asyncio.to_thread(_record, engine, outcomes, now, policy)
            outcomes = []
    if outcomes:
        await asyncio.to_thread(_record, engine, outcomes, now, policy)
    return sent


def _claim(
    engine: Engine, now: datetime, batch: int, lease: timedelta, render: IntentRenderer | None
) -> tuple[list[OutboundMessage], list[tuple[OutboundMessage, DeliveryError]]]:
    """Claim due rows, rendering the intents among them; (ready to send, failed to render)."""
    with session_scope(engine) as session:
        # Concurrent claimers skip each other's rows instead of waiting and then sending them
        # again.
        statement = skip_locked(
            select(OutboundMessage)
            .where(OUTBOUND.c.status == OUTBOUND_PENDING, OUTBOUND.c.next_attempt_at <= now)
            .order_by(OUTBOUND.c.next_attempt_at, OUTBOUND.c.id)
            .limit(batch)
        )
        if render is None:
            statement = statement.where(OUTBOUND.c.raw.is_not(None))
        claimed = list(session.scalars(statement))
        for mail in claimed:
            mail.attempts += 1  # also the claim's fence token, see _record_failure
            mail.next_attempt_at = now + lease
        failed = []
        if render is not None:
            failed = _render_intents(session, render, claimed, now)
        ready = [mail for mail in claimed if mail.raw is not None]
        return ready, failed  # detached with every column loaded (expire_on_commit=False)


def _render_intents(
    session: Session, render: IntentRenderer, claimed: Sequence[OutboundMessage], now: datetime
) -> list[tuple[OutboundMessage, DeliveryError]]:
    """Render the claimed rows that have no bytes yet; the ones that could not be rendered.

    Each in a savepoint: the bytes (and the reply token a notice carries) are stored with the
    claim, or not at all. A row that fails (a template bug, its application gone) keeps no
    bytes, counts the attempt, and is tried again with backoff until it is given up.
    """
    failed: list[tuple[OutboundMessage, DeliveryError]] = []
    for mail in claimed:
        if mail.raw is not None:
            continue
        try:
            with session.begin_nested():
                render(session, mail, now)
        except Exception as exc:
            log.exception("outbox: message %s (%s) could not be rendered", mail.id, mail.kind)
            session.refresh(mail)  # the savepoint's rollback expired it
            failed.append((mail, TransientDeliveryError(f"not rendered: {exc}")))
        else:
            log.info("outbox: message %s rendered (%s to %s)", mail.id, mail.kind, mail.recipient)
    return failed


async def _attempt(transport: Transport, mail: OutboundMessage) -> DeliveryError | None:
    with log_context(outbox_id=mail.id):
        return await _send(transport, mail)


async def _send(transport: Transport, mail: OutboundMessage) -> DeliveryError | None:
    try:
        await transport.send(mail)
    except DeliveryError as exc:
        log.warning("outbox: message %s to %s not delivered: %s", mail.id, mail.recipient, exc)
        return exc
    except Exception as exc:
        # A bug in a transport must still count as an attempt, or the row would come back
        # after every lease forever; record it as transient so the give-up time ends it.
        log.exception("outbox: message %s: unexpected error from the transport", mail.id)
        return TransientDeliveryError(f"unexpected {type(exc).__name__}: {exc}")
    log.info("outbox: message %s %s sent to %s", mail.id, mail.message_id, mail.recipient)
    return None


def _record(
    engine: Engine,
    outcomes: Sequence[tuple[OutboundMessage, DeliveryError | None]],
    now: datetime,
    policy: RetryPolicy,
) -> None:
    with session_scope(engine) as session:
        for mail, error in outcomes:
            if error is None:
                _record_sent(session, mail, now)
            else:
                _record_failure(session, mail, error, now, policy)


def _record_sent(session: Session, mail: OutboundMessage, now: datetime) -> None:
    # No attempts fence here: the relay has the message, so "sent" wins over any later claim.
    session.execute(
        update(OUTBOUND)
        .where(OUTBOUND.c.id == mail.id, OUTBOUND.c.status == OUTBOUND_PENDING)
        .values(status=OUTBOUND_SENT, sent_at=now, last_error=None)
    )


def _record_failure(
    session: Session,
    mail: OutboundMessage,
    error: DeliveryError,
    now: datetime,
    policy: RetryPolicy,
) -> None:
    values: dict[str, Any] = {"last_error": clip_error(str(error))}
    if isinstance(error, PermanentDeliveryError) or policy.gives_up(mail, now):
        values["status"] = OUTBOUND_FAILED
        log.error(
            "outbox: message %s to %s failed after %d attempt(s); given up (mailbot outbox "
            "retry %s sends it again): %s",
            mail.id,
            mail.recipient,
            mail.attempts,
            mail.id,
            error,
            extra={"outbox_id": mail.id},
        )
    else:
        values["next_attempt_at"] = policy.next_attempt(now, mail.attempts)
    # Fenced on attempts: if the lease ran out and someone else claimed the row meanwhile,
    # their outcome is the one that counts.
    session.execute(
        update(OUTBOUND)
        .where(OUTBOUND.c.id == mail.id, OUTBOUND.c.status == OUTBOUND_PENDING)
        .where(OUTBOUND.c.attempts == mail.attempts)
        .values(**values)
    )


def _release(engine: Engine, unsent: Sequence[OutboundMessage], now: datetime) -> None:
    """Hand back claimed rows that were not tried: due again at once, the attempt not counted."""
    with session_scope(engine) as session:
        for mail in unsent:
            session.execute(
                update(OUTBOUND)
                .where(OUTBOUND.c.id == mail.id, OUTBOUND.c.status == OUTBOUND_PENDING)
                .where(OUTBOUND.c.attempts == mail.attempts)
                .values(attempts=mail.attempts - 1, next_attempt_at=now)
            )


# The service loop -------------------------------------------------------------------------


async def run_outbox(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event,
    *,
    render: IntentRenderer,
    clock: Clock = utc_now,
    poll_seconds: float = 1.0,
    transport: Transport | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Deliver due messages until ``stop`` is set. Never raises for a failed round.

    ``render`` renders the intents among them (mailbot.notify.intent_renderer). ``wake`` (set
    by the intake worker after it commits notices) ends an idle wait at once.
    """
    sender = transport if transport is not None else make_transport(settings)
    policy = RetryPolicy.from_settings(settings)
    failures = 0
    while not stop.is_set():
        sent = 0
        try:
            sent = await deliver_due(
                engine,
                sender,
                now=clock(),
                render=render,
                policy=policy,
            )
            failures = 0
        except Exception:
            # The loop boundary: a database outage or a bug in one round must not end the
            # process; the next round tries again (rows claimed meanwhile wait for their lease).
            failures += 1
            log.exception("outbox: delivery round failed (%d in a row)", failures)
        if sent == 0:  # after a productive round, look again at once: more may be due
            await _idle(stop, _idle_seconds(poll_seconds, failures), wake)


def _idle_seconds(poll_seconds: float, failures: int) -> float:
    # Back off while the rounds keep failing, so a database outage does not flood the log.
    return min(
        poll_seconds * 2.0 ** min(failures, 16), max(poll_seconds, MAX_IDLE_AFTER_ERRORS_SECONDS)
    )


async def _idle(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None) -> None:
    await wait_any(*([stop] if wake is None else [stop, wake]), timeout=seconds)
    if wake is not None:
        wake.clear()
