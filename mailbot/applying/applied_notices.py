"""The applied notices of a batch, queued as outbox intents in the batch's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, cast, func, literal, select, true
from sqlmodel import Session

from mailbot import notices
from mailbot.applying.batch import APPLICATION, Batch
from mailbot.config import Settings
from mailbot.notices import APPLIED_KIND
from mailbot.outbox import enqueue_intents


def queue_notices(session: Session, settings: Settings, batch: Batch, now: datetime) -> None:
    """The applied notice to applicant and manager (once when they share an address).

    Intents, not messages: one ``INSERT … SELECT`` per role puts rows without bytes into the
    outbox in this transaction, so a notice exists if and only if the apply committed. The
    outbox renders each (mailbot.notify.render_intent: the template, a reply token for that
    recipient, the facts from the audit event written above) before its first delivery.
    """
    a = APPLICATION.c
    # Message-IDs are fixed now: unique per batch (the nonce), application and role.
    nonce = uuid.uuid4().hex
    for role, address, only_if in (
        ("a", a.applicant_email, true()),
        ("m", a.manager_email, a.manager_email != a.applicant_email),
    ):
        message_id = (
            literal(f"<{APPLIED_KIND}.{nonce}.", String)
            + cast(a.id, String)
            + literal(f".{role}@{settings.domain}>", String)
        )
        key = notices.dedupe_key(notices.application_cause(a.receipt_no), notices.APPLIED, address)
        rows = select(
            literal(APPLIED_KIND, String).label("kind"),
            key.label("dedupe_key"),
            a.id.label("application_id"),
            a.inbound_id.label("inbound_id"),
            func.trim(address).label("recipient"),
            message_id.label("message_id"),
        ).where(batch.holds(a.id), only_if)
        enqueue_intents(session, rows, now=now)
