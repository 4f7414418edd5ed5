"""Who may get an automatic reply, and how many: the one gate every reply to a sender passes.

Anybody can write any address into From, so every automatic reply may land on an innocent
third party (backscatter). mailbot therefore answers:

* **never** the null sender (``MAIL FROM:<>``: bounces and other reports), one of its own
  addresses (the intake address and every ``+tag`` of it, in any case), or something that is
  no address at all (a From written as one undecodable encoded-word), whatever the caller
  thought;
* a **known sender** (a registered contact of an office, or a staff member) up to
  ``MAILBOT_AUTOREPLY_PER_DAY`` times a day, with the blank form attached where the reply
  offers one;
* anyone else (an **outsider**) at most :data:`OUTSIDER_REPLIES_PER_DAY` short text reply a
  day (no attachment, at most :data:`OUTSIDER_REPLY_MAX_BYTES` as queued), and all outsiders
  together at most ``MAILBOT_OUTSIDER_REPLIES_PER_HOUR`` replies per clock hour (UTC), so a flood
  of forged mail cannot make mailbot a mail cannon. The first reply the hourly cap holds back
  in an hour is logged at WARNING.

Replies are counted per mailbox: the address with its ``+tag`` removed and its case folded
(``Mallory+1@Example.NET`` counts as ``mallory@example.net``), so tag variants share one
allowance. Counts are rows of ``autoreply_count`` (an atomic upsert per reply, in the
transaction that queues it: a rollback gives the allowance back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from db.models import InboundMessage, Staff
from mailbot.addresses import is_null_sender, is_own_address, split_address
from mailbot.config import Settings
from mailbot.outbox import count_autoreply
from mailbot.registry_queries import is_registered_contact

log = logging.getLogger(__name__)

OUTSIDER_REPLIES_PER_DAY = 1
OUTSIDER_REPLY_MAX_BYTES = 8 * 1024


@dataclass(frozen=True)
class ReplyAllowance:
    """Whether a reply may be queued, and in which form."""

    granted: bool
    outsider: bool  # short text only: no attachment, at most OUTSIDER_REPLY_MAX_BYTES
    reason: str = ""  # why not, for the log


def is_known_sender(session: Session, address: str) -> bool:
    """A registered contact of an office, or a staff member: someone mailbot may answer in
    full (forms attached, the daily allowance of MAILBOT_AUTOREPLY_PER_DAY)."""
    if is_registered_contact(session, address):
        return True
    query = select(Staff.id).where(Staff.email == address.strip().lower()).limit(1)
    return session.exec(query).first() is not None


def take_reply_allowance(
    session: Session, settings: Settings, *, to: str, inbound_id: int | None, now: datetime
) -> ReplyAllowance:
    """Decide, and count, one automatic reply to ``to`` answering inbound message
    ``inbound_id``. Call it in the transaction that queues the reply."""
    refusal = _never_answered(session, settings, to, inbound_id)
    if refusal is not None:
        log.info("not answering message %s: %s", inbound_id, refusal)
        return ReplyAllowance(granted=False, outsider=True, reason=refusal)
    outsider = not is_known_sender(session, to)
    day = now.astimezone(settings.zone).date()
    limit = OUTSIDER_REPLIES_PER_DAY if outsider else settings.autoreply_per_day
    if count_autoreply(session, to, day) > limit:
        reason = f"{to} has had its {limit} automatic repl{'y' if limit == 1 else 'ies'} today"
        log.info("not answering message %s: %s", inbound_id, reason)
        return ReplyAllowance(granted=False, outsider=outsider, reason=reason)
    if outsider and not _outsider_hour_allows(
        session, now, inbound_id, settings.outsider_replies_per_hour
    ):
        return ReplyAllowance(granted=False, outsider=True, reason="hourly cap on outsiders")
    return ReplyAllowance(granted=True, outsider=outsider)


def _never_answered(
    session: Session, settings: Settings, to: str, inbound_id: int | None
) -> str | None:
    if is_null_sender(to):
        return "no address to answer (null sender)"
    local, domain = split_address(to)
    if not local or not domain:
        return f"{to!r} is no mail address (an undecoded word, a bare name)"
    if is_own_address(to, settings):
        return f"{to} is mailbot's own address"
    inbound = session.get(InboundMessage, inbound_id) if inbound_id is not None else None
    if inbound is not None and is_null_sender(inbound.envelope_from):
        return "the envelope sender is null (MAIL FROM:<>): a report, never answered"
    return None


def _outsider_hour_allows(
    session: Session, now: datetime, inbound_id: int | None, cap: int
) -> bool:
    hour = now.astimezone(UTC)
    # Stored beside the per-address counts under a key no address can take (it has spaces).
    key = f"<replies to outsiders {hour:%H}:00 UTC>"
    sent = count_autoreply(session, key, hour.date(), fold=False)
    if sent <= cap:
        return True
    # One WARNING per hour in which the cap bites; the rest would only flood the log.
    level = logging.WARNING if sent == cap + 1 else logging.INFO
    log.log(
        level,
        "not answering message %s: %d replies to outsiders this hour (%s), the cap; "
        "a flood of mail from unregistered (possibly forged) senders?",
        inbound_id,
        cap,
        f"{hour:%Y-%m-%d %H}:00 UTC",
    )
    return False
