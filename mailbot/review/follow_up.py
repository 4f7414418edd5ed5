"""An applicant's or manager's reply that is not a withdrawal: staff get to read it.

Such a reply (a question, a correction, "please cancel" after the approval) arrives at the
reply address of a notice, with that recipient's token. mailbot cannot act on free text, so it
forwards what the person wrote to every active staff member, with a Reply-To of the person:
staff answer them directly from their own mailbox. Only replies whose token matches their
sender are forwarded (the caller checks), so an outsider cannot reach staff through mailbot.
Forwards count against the sender's daily allowance of automatic mail
(``MAILBOT_AUTOREPLY_PER_DAY``), so a looping mailer cannot flood staff.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from db.models import Application, InboundMessage
from mailbot import notices
from mailbot.config import Settings
from mailbot.mime import ParsedMail
from mailbot.notify import application_context, queue_staff_mail, status_url
from mailbot.outbox import take_autoreply_allowance
from mailbot.quoting import new_lines
from mailbot.staff import active_staff

# Characters of the reply shown to staff; the rest stays in the stored message.
TEXT_LIMIT = 4000


def forward_to_staff(
    session: Session,
    settings: Settings,
    application: Application,
    inbound: InboundMessage,
    mail: ParsedMail,
    *,
    sender: str,
    now: datetime,
) -> int:
    """Queue one copy of the reply for each active staff member; how many were queued."""
    if not take_autoreply_allowance(
        session, sender, now.astimezone(settings.zone).date(), settings.autoreply_per_day
    ):
        return 0
    text, truncated = _excerpt(mail.text)
    context = {
        **application_context(session, application),
        "sender": sender,
        "subject": mail.subject,
        "text": text,
        "truncated": truncated,
        "inbound_id": inbound.id,
        "status_url": status_url(session, settings, application.receipt_no, now),
    }
    queued = 0
    for member in active_staff(session):
        queued += queue_staff_mail(
            session,
            settings,
            member,
            notices.FOLLOW_UP_STAFF,
            context,
            cause=notices.inbound_cause(inbound.id),
            application_id=application.id,
            inbound_id=inbound.id,
            reply_to=sender,
            now=now,
        )
    return queued


def _excerpt(text: str) -> tuple[str, bool]:
    """What the person wrote (quoted earlier mail dropped), cut at TEXT_LIMIT characters."""
    written = "\n".join(new_lines(text)).strip() or text.strip()
    if len(written) <= TEXT_LIMIT:
        return written, False
    return written[:TEXT_LIMIT].rstrip(), True
