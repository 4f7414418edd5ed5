"""The transactional outbox: rows written with the change that causes them, delivered later.

Writers call :func:`enqueue` inside their own transaction, so a notice exists if and only if
the change that causes it was committed. :func:`run_outbox` delivers due rows through a
:class:`Transport` (a Maildir folder or an SMTP relay) with retries and exponential backoff.

A writer with many notices at once (applying thousands of applications on one start date)
calls :func:`enqueue_intents` instead: one ``INSERT … SELECT`` of rows that name the kind,
application, recipient, dedupe key and Message-ID but carry no bytes yet. The invariant is the
same, a notice exists iff its cause committed; what moves is the rendering. The outbox renders
such a row in the transaction that claims it for its first attempt, with the renderer its caller
gives it (:data:`IntentRenderer`; serve gives mailbot.notify's), and stores the bytes with the
claim, so the row is rendered exactly once and every
retry sends exactly those bytes. A crash before that commit leaves the row unrendered and due,
and the next claim renders it.

Delivery is at-least-once to the relay, exactly-once in the normal case: a row is claimed in
one short transaction (attempts + 1, ``next_attempt_at`` pushed out by a lease), sent outside
any transaction, and the result recorded in another. Several processes never send the same
row at the same time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
but a crash between the send and the record makes the row due again when its lease ends, so
it goes out once more. The raw bytes, and with them the Message-ID, are the same on every
attempt, so receiving systems can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mailbox
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from sqlalchemy import CursorResult, Engine, Select, Table, literal, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from db.engine import session_scope
from db.models import (
    OUTBOUND_BOUNCED,
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_SENT,
    AutoreplyCount,
    OutboundMessage,
    utcnow,
)
from mailbot.addresses import mailbox_key, tagged_address
from mailbot.compose import ComposedMail, normalize_message_id
from mailbot.config import RelayTarget, Settings
from mailbot.errors import MailbotError, NotFoundError
from mailbot.logs import log_context

log = logging.getLogger(__name__)

OUTBOUND_STATUSES = (OUTBOUND_PENDING, OUTBOUND_SENT, OUTBOUND_FAILED, OUTBOUND_BOUNCED)
# How long a claimed row belongs to its claimer. Sending stops at half the lease (see
# deliver_due), so a slow batch never runs into rows another process may claim again.
LEASE = timedelta(minutes=1)  # a crashed sender's claims come back after this
RECORD_EVERY = 1
# Retries are at most this far apart (MAILBOT_OUTBOX_MAX_BACKOFF_SECONDS may lower it): a relay
# that comes back gets the queue within the hour, however long it was away.
MAX_BACKOFF = timedelta(hours=1)
# Per SMTP command; a whole send is a handful of commands, far inside half a lease.
SMTP_TIMEOUT_SECONDS = 30.0
# Envelope sender of SMTP delivery: apply+bounce@domain, an own address, so DSNs come back
# through the gateway to mailbot instead of to some unwatched mailbox.
BOUNCE_TAG = "bounce"
MAX_ERROR_CHARS = 2000
MAX_IDLE_AFTER_ERRORS_SECONDS = 60.0

_OUTBOUND: Table = SQLModel.metadata.tables[OutboundMessage.__tablename__]
_AUTOREPLY: Table = SQLModel.metadata.tables[AutoreplyCount.__tablename__]


# Renders an intent row in the caller's transaction (sets ``raw`` and ``subject``); raises when
# it cannot. Given by the caller (mailbot.notify.intent_renderer), so the outbox knows how to
# store and send a notice, and the notices know how to queue one, without knowing each other.
IntentRenderer = Callable[[Session, OutboundMessage, datetime], None]


class OutboxError(MailbotError):
    """An outbox request that cannot be carried out (an unknown status, a retry of a sent row)."""


class DeliveryError(MailbotError):
    """A message could not be handed to the relay."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later: the relay is down, busy, or answered 4xx."""


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help: the relay answered 5xx for this message."""


# Writing ----------------------------------------------------------------------------------


def _insert(session: Session) -> Any:
    # Both dialects spell the upsert the same way, but it lives in dialect-specific modules.
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


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
    moment = now if now is not None else utcnow()
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
    new_id: int | None = session.execute(_enqueue_statement(session), values).scalar_one_or_none()
    return new_id


@cache
def _enqueue_statement_for(dialect: str) -> Any:
    # Built once per dialect and executed with the values as parameters: building the
    # statement per notice cost as much as running it.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_OUTBOUND)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(_OUTBOUND.c.id)
    )


def _enqueue_statement(session: Session) -> Any:
    return _enqueue_statement_for(session.get_bind().dialect.name)


def enqueue_intents(session: Session, rows: Select[*tuple[Any, ...]], *, now: datetime) -> int:
    """Queue notices to be rendered at delivery, in the caller's transaction; rows queued.

    ``rows`` selects ``kind, dedupe_key, application_id, inbound_id, recipient, message_id``
    (by those labels), one row per notice. One ``INSERT … SELECT … ON CONFLICT (dedupe_key)
    DO NOTHING``: as with :func:`enqueue`, a cause processed twice queues nothing twice.
    The kind must be one the deliverer's :data:`IntentRenderer` knows how to render.
    """
    wanted = rows.subquery()
    o = _OUTBOUND.c
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
        _insert(session)(_OUTBOUND)
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
    # The driver's row count (PostgreSQL's command tag, SQLite's changes()) counts the rows
    # inserted, not those skipped as conflicts; fetching an id per row just to count them cost
    # a tenth of a big apply (docs/performance.md). SQLAlchemy keeps an INSERT's count only
    # when asked to (preserve_rowcount).
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        statement, execution_options={"preserve_rowcount": True}
    )
    return result.rowcount


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
        _insert(session)(_AUTOREPLY)
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
        update(_OUTBOUND)
        .where(_OUTBOUND.c.message_id.in_(sorted(wanted)))
        .where(_OUTBOUND.c.status != OUTBOUND_BOUNCED)
        .values(status=OUTBOUND_BOUNCED, last_error=_clip(reason or "bounced"))
        .returning(_OUTBOUND.c.id)
    )
    return len(session.execute(statement).all())


# Operator views ---------------------------------------------------------------------------


def list_outbox(
    session: Session, status: str | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows for ``mailbot outbox list``, oldest first, JSON-ready (times as ISO 8601 UTC)."""
    if status is not None and status not in OUTBOUND_STATUSES:
        raise OutboxError(
            f"unknown outbox status {status!r}; use one of {', '.join(OUTBOUND_STATUSES)}"
        )
    statement = select(_OUTBOUND).order_by(_OUTBOUND.c.id)
    if status is not None:
        statement = statement.where(_OUTBOUND.c.status == status)
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
    row = session.execute(select(_OUTBOUND).where(_OUTBOUND.c.id == id)).first()
    if row is None:
        raise NotFoundError(f"there is no outbox message {id} (see `mailbot outbox list`)")
    return _summary(row._mapping)


def _requeue(now: datetime | None) -> dict[str, Any]:
    # A fresh set of attempts, due at once, and a fresh give-up time counted from now.
    moment = now or utcnow()
    return {
        "status": OUTBOUND_PENDING,
        "attempts": 0,
        "next_attempt_at": moment,
        "requeued_at": moment,
    }


def retry_failed(session: Session, *, now: datetime | None = None) -> list[int]:
    """Queue every failed message again (``mailbot outbox retry --failed``); their ids."""
    statement = (
        update(_OUTBOUND)
        .where(_OUTBOUND.c.status == OUTBOUND_FAILED)
        .values(**_requeue(now))
        .returning(_OUTBOUND.c.id)
    )
    return sorted(row.id for row in session.execute(statement))


def retry_outbox(session: Session, id: int, *, now: datetime | None = None) -> None:
    """Give a failed message a fresh set of attempts, due at once (``mailbot outbox retry``)."""
    statement = (
        update(_OUTBOUND)
        .where(_OUTBOUND.c.id == id, _OUTBOUND.c.status == OUTBOUND_FAILED)
        .values(**_requeue(now))
        .returning(_OUTBOUND.c.id)
    )
    if session.execute(statement).first() is not None:
        return
    row = session.get(OutboundMessage, id)
    if row is None:
        raise NotFoundError(f"there is no outbox message {id} (see `mailbot outbox list`)")
    raise OutboxError(f"outbox message {id} is {row.status}; only failed messages can be retried")


# Transports -------------------------------------------------------------------------------


class Transport(Protocol):
    # True when sending the same row twice delivers it once (the Maildir names each file after
    # its row): the outbox may then record a whole round in one commit, since a crash before
    # that commit only makes the next round find the files already there.
    idempotent: bool

    async def send(self, mail: OutboundMessage) -> None:
        """Hand ``mail.raw`` over for ``mail.recipient``; raise a DeliveryError subclass."""


def wire_bytes(mail: OutboundMessage) -> bytes:
    """The stored bytes of a claimed row (intents are rendered when claimed, never sent bare)."""
    if mail.raw is None:
        raise OutboxError(f"outbox message {mail.id} has not been rendered; it cannot be sent")
    return mail.raw


class MaildirTransport:
    """Delivers into a Maildir folder (development, demos, or a local MDA picking it up).

    Each file is written to ``tmp/`` and then linked into ``new/``, so readers never see a
    half-written file. The stored bytes are written exactly (CRLF line ends included, which
    ``mailbox``, mutt and Dovecot all read), so the file is the message as a relay would get it.

    Exactly once: the file is named after its outbox row (``<row id>.<hash of the
    Message-ID>.mailbot``), and a row whose file is already in ``new/`` (or, read meanwhile,
    in ``cur/``) is not written again. A crash between writing and recording therefore never
    makes a second copy.
    """

    idempotent = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def send(self, mail: OutboundMessage) -> None:
        await asyncio.to_thread(self._write, maildir_name(mail), wire_bytes(mail), mail.attempts)

    def _write(self, name: str, raw: bytes, attempts: int) -> None:
        try:
            new, tmp = self.path / "new", self.path / "tmp"
            if not new.is_dir():
                # MAILBOT_HOME may not exist yet; mailbox.Maildir makes cur/, new/, tmp/.
                self.path.parent.mkdir(parents=True, exist_ok=True)
                mailbox.Maildir(self.path, create=True)
            # Only a row claimed before can have a file already; a first attempt skips the
            # look into cur/, which a reader may have filled with thousands of messages.
            if attempts > 1 and self._delivered(name):
                return
            staged = tmp / name
            staged.write_bytes(raw)
            try:
                os.link(staged, new / name)
            except FileExistsError:
                pass  # written by the attempt that crashed before recording it
            finally:
                staged.unlink()
        except OSError as exc:  # a full disk or a permission problem can be fixed and retried
            raise TransientDeliveryError(f"cannot write to Maildir {self.path}: {exc}") from exc

    def _delivered(self, name: str) -> bool:
        if (self.path / "new" / name).exists():
            return True
        # A reader that has seen the file moves it to cur/ as NAME:2,FLAGS.
        with os.scandir(self.path / "cur") as entries:
            return any(entry.name.partition(":")[0] == name for entry in entries)


def maildir_name(mail: OutboundMessage) -> str:
    """The file name of a row in the Maildir: unique, and the same on every attempt."""
    digest = hashlib.sha256(mail.message_id.encode()).hexdigest()[:16]
    return f"{mail.id}.{digest}.mailbot"


class SmtpTransport:
    """Hands each message to an SMTP relay (aiosmtplib), one connection per message."""

    # A relay cannot be asked whether it already has a message: each send is recorded at
    # once, so a crash re-sends (same Message-ID) at most the one in flight.
    idempotent = False

    def __init__(
        self,
        target: RelayTarget,
        *,
        envelope_sender: str,
        helo_name: str | None = None,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        if target.kind not in ("smtp", "smtps"):
            raise OutboxError(
                f"SmtpTransport needs an smtp:// or smtps:// relay, not {target.kind}"
            )
        self.target = target
        self.envelope_sender = envelope_sender
        self.helo_name = helo_name
        self.timeout = timeout

    async def send(self, mail: OutboundMessage) -> None:
        target = self.target
        try:
            await aiosmtplib.send(
                wire_bytes(mail),
                sender=self.envelope_sender,
                recipients=[mail.recipient],
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                local_hostname=self.helo_name,
                use_tls=target.kind == "smtps",
                # Explicit False: aiosmtplib's default (None) upgrades opportunistically and
                # then fails on a relay with a certificate nobody configured us to trust.
                start_tls=target.kind == "smtp" and target.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise _by_code(min(codes, default=450), f"recipient refused: {exc}") from exc
        except (
            aiosmtplib.SMTPConnectResponseError,
            aiosmtplib.SMTPHeloError,
            aiosmtplib.SMTPAuthenticationError,
        ) as exc:
            # The relay turned us away before looking at this message: its availability or our
            # credentials, fixable by an operator, so keep the message.
            raise TransientDeliveryError(f"relay {target.host}:{target.port}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, f"relay {target.host}:{target.port}: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # connection, TLS, timeouts
            raise TransientDeliveryError(f"relay {target.host}:{target.port}: {exc}") from exc


def _by_code(code: int, text: str) -> DeliveryError:
    return PermanentDeliveryError(text) if 500 <= code < 600 else TransientDeliveryError(text)


def bounce_address(settings: Settings) -> str:
    return tagged_address(settings, BOUNCE_TAG)


def make_transport(settings: Settings) -> Transport:
    target = settings.relay_target
    if target.kind == "maildir":
        if target.path is None:
            raise OutboxError("MAILBOT_RELAY names a Maildir without a path")
        return MaildirTransport(target.path)
    return SmtpTransport(
        target, envelope_sender=bounce_address(settings), helo_name=settings.domain
    )


# Delivery ---------------------------------------------------------------------------------


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
        return self.give_up_after is not None and now - _aware(queued) >= self.give_up_after

    def next_attempt(self, now: datetime, attempts: int) -> datetime:
        return next_attempt(now, attempts, self.backoff_seconds, self.max_backoff_seconds)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for the UTC values it stores.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def deliver_due(
    engine: Engine,
    transport: Transport,
    *,
    now: datetime,
    max_attempts: int | None = None,
    backoff_seconds: float = 30.0,
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
        statement = (
            select(OutboundMessage)
            .where(_OUTBOUND.c.status == OUTBOUND_PENDING, _OUTBOUND.c.next_attempt_at <= now)
            .order_by(_OUTBOUND.c.next_attempt_at, _OUTBOUND.c.id)
            .limit(batch)
            # PostgreSQL: concurrent claimers skip each other's rows instead of waiting and
            # then sending them again. SQLite ignores it; BEGIN IMMEDIATE serialises claims.
            .with_for_update(skip_locked=True)
        )
        if render is None:
            statement = statement.where(_OUTBOUND.c.raw.is_not(None))
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
        update(_OUTBOUND)
        .where(_OUTBOUND.c.id == mail.id, _OUTBOUND.c.status == OUTBOUND_PENDING)
        .values(status=OUTBOUND_SENT, sent_at=now, last_error=None)
    )


def _record_failure(
    session: Session,
    mail: OutboundMessage,
    error: DeliveryError,
    now: datetime,
    policy: RetryPolicy,
) -> None:
    values: dict[str, Any] = {"last_error": _clip(str(error))}
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
        update(_OUTBOUND)
        .where(_OUTBOUND.c.id == mail.id, _OUTBOUND.c.status == OUTBOUND_PENDING)
        .where(_OUTBOUND.c.attempts == mail.attempts)
        .values(**values)
    )


def _release(engine: Engine, unsent: Sequence[OutboundMessage], now: datetime) -> None:
    """Hand back claimed rows that were not tried: due again at once, the attempt not counted."""
    with session_scope(engine) as session:
        for mail in unsent:
            session.execute(
                update(_OUTBOUND)
                .where(_OUTBOUND.c.id == mail.id, _OUTBOUND.c.status == OUTBOUND_PENDING)
                .where(_OUTBOUND.c.attempts == mail.attempts)
                .values(attempts=mail.attempts - 1, next_attempt_at=now)
            )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# The service loop -------------------------------------------------------------------------


async def run_outbox(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event,
    *,
    render: IntentRenderer,
    clock: Callable[[], datetime] = utcnow,
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
    events = [stop] if wake is None else [stop, wake]
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if wake is not None:
        wake.clear()
