"""Retention of personal data: the raw bytes of processed mail are removed after a while.

A request's raw message carries the applicant's name, phone and address, and an outsider's
mail may carry anything; the APPI expects personal data to be kept no longer than needed.
What mailbot needs later is the application (its own rows), the audit trail, and enough of
each message to know what it was. So, for processed mail (status ``done``):

* after ``MAILBOT_RETAIN_RAW_DAYS`` (90) days from processing, the raw bytes are removed;
* mail whose sender is neither a registered contact nor a staff member (outsiders, robots,
  bounces) goes sooner, after ``MAILBOT_RETAIN_OUTSIDER_DAYS`` (7);
* kept for good: the row (SHA-256, so a redelivery is still recognised; envelope; size;
  channel; outcome; times), the key headers (From, To, Cc, Subject, Date, decoded, in
  ``headers``), and the audit trail, which never holds raw mail;
* never removed: quarantined or unprocessed mail (an operator still has to look at it; it
  becomes eligible once processed, counted from then).

The bytes of sent (or bounced) notices are removed after ``MAILBOT_RETAIN_RAW_DAYS`` too;
their subject, recipient and Message-ID stay. Failed and pending notices keep theirs (they may
still be sent).

The scheduler runs :func:`purge` daily at ``MAILBOT_RETENTION_TIME`` and when it starts
leading; ``mailbot inbound purge [--before DATE]`` runs it by hand. It is idempotent and works
in batches, each its own transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Engine, case, func, select, update
from sqlmodel import Session, col

from db.engine import session_scope
from db.models import (
    INBOUND_DONE,
    OUTBOUND_BOUNCED,
    OUTBOUND_SENT,
    AuditEvent,
    InboundMessage,
    OutboundMessage,
)
from mailbot.clock import as_utc
from mailbot.config import Settings
from mailbot.mime import parse_headers
from mailbot.reply_limits import is_known_sender

log = logging.getLogger(__name__)

# Enough of a message to read its header block without loading a large attachment.
HEADER_BYTES = 32 * 1024
BATCH = 200
# The headers kept once the bytes are gone.
KEPT_HEADERS = ("from", "to", "cc", "subject", "date")
EMPTY = b""


@dataclass(frozen=True)
class RetentionPolicy:
    """Raw bytes processed before ``raw_before`` go; an outsider's before ``outsider_before``."""

    raw_before: datetime
    outsider_before: datetime

    @classmethod
    def from_settings(cls, settings: Settings, now: datetime) -> RetentionPolicy:
        return cls(
            raw_before=now - timedelta(days=settings.retain_raw_days),
            outsider_before=now - timedelta(days=settings.retain_outsider_days),
        )

    @classmethod
    def everything_before(cls, moment: datetime) -> RetentionPolicy:
        """``mailbot inbound purge --before DATE``: all processed mail before then."""
        return cls(raw_before=moment, outsider_before=moment)

    @property
    def scan_before(self) -> datetime:
        return max(self.raw_before, self.outsider_before)


@dataclass
class PurgeReport:
    messages: int = 0  # inbound messages whose bytes were removed
    outsiders: int = 0  # of which sent by outsiders (removed early)
    notices: int = 0  # sent notices whose bytes were removed
    bytes_removed: int = 0
    message_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "outsiders": self.outsiders,
            "notices": self.notices,
            "bytes_removed": self.bytes_removed,
        }

    def describe(self) -> str:
        return (
            f"removed the raw bytes of {self.messages} message(s) ({self.outsiders} from "
            f"outsiders) and {self.notices} sent notice(s), {self.bytes_removed:,} bytes"
        )


def purge(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    now: datetime,
    notices: bool = True,
    dry_run: bool = False,
    actor: str = "retention",
    batch: int = BATCH,
) -> PurgeReport:
    """Remove the raw bytes ``policy`` says are due; what was (or, dry, would be) removed."""
    report = PurgeReport()
    after_id = 0
    while True:
        with session_scope(engine) as session:
            rows = _candidates(session, policy.scan_before, after_id, batch)
            if not rows:
                break
            after_id = rows[-1].id
            _purge_messages(session, rows, policy, now, report, dry_run)
    if notices:
        with session_scope(engine) as session:
            _purge_notices(session, policy.raw_before, now, report, dry_run)
    if not dry_run and (report.messages or report.notices):
        with session_scope(engine) as session:
            session.add(
                AuditEvent(
                    at=now,
                    event="raw_mail_removed",
                    actor=actor,
                    detail={
                        **report.as_dict(),
                        "raw_before": policy.raw_before.isoformat(),
                        "outsider_before": policy.outsider_before.isoformat(),
                    },
                )
            )
        log.info("retention: %s", report.describe())
    return report


@dataclass(frozen=True)
class _Candidate:
    id: int
    processed_at: datetime
    envelope_from: str | None
    size: int
    headers: dict[str, str] | None
    header_block: bytes | None  # read only when ``headers`` is not known yet


def _candidates(session: Session, before: datetime, after_id: int, batch: int) -> list[_Candidate]:
    m = InboundMessage
    needs_block = col(m.headers).is_(None)
    query = (
        select(
            col(m.id),
            col(m.processed_at),
            col(m.envelope_from),
            col(m.size),
            col(m.headers),
            # The first bytes only, and only of messages not looked at before.
            case((needs_block, func.substr(col(m.raw), 1, HEADER_BYTES)), else_=None),
        )
        .where(
            col(m.status) == INBOUND_DONE,
            col(m.raw_removed_at).is_(None),
            col(m.processed_at) < before,
            col(m.id) > after_id,
        )
        .order_by(col(m.id))
        .limit(batch)
    )
    found = []
    for row in session.execute(query):
        assert row[0] is not None and row[1] is not None
        block = bytes(row[5]) if row[5] is not None else None
        found.append(_Candidate(row[0], as_utc(row[1]), row[2], row[3], row[4], block))
    return found


def _purge_messages(
    session: Session,
    rows: list[_Candidate],
    policy: RetentionPolicy,
    now: datetime,
    report: PurgeReport,
    dry_run: bool,
) -> None:
    for row in rows:
        headers = row.headers if row.headers is not None else key_headers(row.header_block or b"")
        sender = parseaddr(headers.get("from", ""))[1] or row.envelope_from or ""
        expired = row.processed_at < policy.raw_before
        outsider = row.processed_at < policy.outsider_before and not (
            sender and is_known_sender(session, sender)
        )
        values: dict[str, Any] = {}
        if row.headers is None:
            # Kept from the first look on, so later runs need not read the bytes again.
            values["headers"] = headers
        if expired or outsider:
            report.messages += 1
            report.outsiders += outsider and not expired
            report.bytes_removed += row.size
            report.message_ids.append(row.id)
            values.update(raw=EMPTY, raw_removed_at=now)
        if values and not dry_run:
            session.execute(
                update(InboundMessage).where(col(InboundMessage.id) == row.id).values(**values)
            )


def _purge_notices(
    session: Session, before: datetime, now: datetime, report: PurgeReport, dry_run: bool
) -> None:
    o = OutboundMessage
    due = (
        col(o.status).in_((OUTBOUND_SENT, OUTBOUND_BOUNCED)),
        col(o.raw).is_not(None),
        col(o.raw_removed_at).is_(None),
        col(o.created_at) < before,
    )
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(func.length(o.raw)), 0)).where(*due)
    ).one()
    report.notices += int(count)
    report.bytes_removed += int(size)
    if count and not dry_run:
        session.execute(update(o).where(*due).values(raw=None, raw_removed_at=now))


def key_headers(block: bytes) -> dict[str, str]:
    """From, To, Cc, Subject and Date of a message's header block, decoded (absent: left out)."""
    end = min((i for i in (block.find(b"\r\n\r\n"), block.find(b"\n\n")) if i >= 0), default=-1)
    parsed = parse_headers(block[:end] if end >= 0 else block)
    kept = {}
    for name in KEPT_HEADERS:
        value = parsed.header(name)
        if value:
            kept[name] = " ".join(value.split())
    return kept
