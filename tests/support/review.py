"""A request through the review, as the review tests drive it: sent over SMTP to the demo
registry, answered by replying to the mails it caused."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage

from db.engine import session_scope
from mailbot.staff import add_staff
from tests.support.harness import Harness
from tests.support.replies import reply_address, reply_to
from tests.support.requests import form, mail

STAFF2 = "staff2@mailbot.localhost"
START = date(2026, 12, 15)


def with_second_reviewer(h: Harness) -> Harness:
    """``h`` with a second active staff member, STAFF2 (審査 次郎)."""
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2, "審査 次郎")
    return h


def status(h: Harness) -> str:
    """The status of the (first) application."""
    return h.applications()[0].status


def refusals(h: Harness) -> list[str]:
    """Why replies were refused: the reasons of the reply_refused events, oldest first."""
    return [str(e.detail["reason"]) for e in h.audit_events("reply_refused")]


def to(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)


def submit(h: Harness) -> dict[str, EmailMessage]:
    """Send a valid request; return the mails that came out, keyed by kind and recipient."""
    out = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    keyed = {}
    for message in out:
        kind = "review" if "審査依頼" in str(message["Subject"]) else "receipt"
        keyed[f"{kind}:{to(message)}"] = message
    return keyed


def answer(
    h: Harness, message: EmailMessage, sender: str, body: str, **kw: object
) -> list[EmailMessage]:
    """``sender`` replies ``body`` on top of ``message`` (quoted), to its reply address."""
    raw = reply_to(message, sender=sender, body=body, **kw)  # type: ignore[arg-type]
    return h.round_trip(raw, mail_from=sender, rcpt_to=kw.get("to") or reply_address(message))  # type: ignore[arg-type]
