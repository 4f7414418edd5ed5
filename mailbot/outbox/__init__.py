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

The outbox's jobs, a module each: :mod:`~mailbot.outbox.queue` (writing rows),
:mod:`~mailbot.outbox.delivery` (claiming, rendering intents, sending, recording; the service
loop), :mod:`~mailbot.outbox.transports` (Maildir, SMTP relay) and
:mod:`~mailbot.outbox.views` (what ``mailbot outbox`` shows and retries).
"""

from mailbot.outbox.delivery import (
    LEASE,
    MAX_BACKOFF,
    IntentRenderer,
    RetryPolicy,
    deliver_due,
    next_attempt,
    run_outbox,
)
from mailbot.outbox.queue import (
    OutboxError,
    count_autoreply,
    enqueue,
    enqueue_intents,
    mark_bounced,
    take_autoreply_allowance,
)
from mailbot.outbox.transports import (
    DeliveryError,
    MaildirTransport,
    PermanentDeliveryError,
    SmtpTransport,
    TransientDeliveryError,
    Transport,
    bounce_address,
    make_transport,
)
from mailbot.outbox.views import list_outbox, outbox_row, retry_failed, retry_outbox

__all__ = [
    "LEASE",
    "MAX_BACKOFF",
    "DeliveryError",
    "IntentRenderer",
    "MaildirTransport",
    "OutboxError",
    "PermanentDeliveryError",
    "RetryPolicy",
    "SmtpTransport",
    "TransientDeliveryError",
    "Transport",
    "bounce_address",
    "count_autoreply",
    "deliver_due",
    "enqueue",
    "enqueue_intents",
    "list_outbox",
    "make_transport",
    "mark_bounced",
    "next_attempt",
    "outbox_row",
    "retry_failed",
    "retry_outbox",
    "run_outbox",
    "take_autoreply_allowance",
]
