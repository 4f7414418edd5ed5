"""A reply's authority: whether a reply at a reply address may act, checked here and nowhere else.

Approving by email is the most dangerous thing mailbot does: a forged approval abolishes a
company's IDs. So a staff member's reply acts only when every one of these holds: the token in
the reply address is ours, unused, unexpired and of the purpose the handler needs (review or
cancel); the From address is the staff member the token was issued to; that member is still
active; the envelope sender, where the channel has one, is that same mailbox
(``mailbot.return_path``, unless ``MAILBOT_REVIEW_ENVELOPE_CHECK`` is false); and, when
``MAILBOT_TRUSTED_AUTHSERV_ID`` is set, the trusted server saw DKIM or DMARC pass for the From
domain (``mailbot.authres``). Whether the application is still in the state the token was
issued for is the handler's to check (mailbot.review.replies). An applicant's or manager's
reply acts only with a valid token of purpose APPLICANT issued to its From address.

What fails is a :class:`Refusal`: the handler records it and answers only a staff address.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import NamedTuple

from sqlmodel import Session

from db.models import Application, InboundMessage, Staff, Token
from mailbot.authres import authenticated
from mailbot.config import Settings
from mailbot.keys import Keyring, verifying_keyring
from mailbot.mime import ParsedMail
from mailbot.return_path import envelope_agrees
from mailbot.review.context import ReviewContext
from mailbot.tokens import Purpose, TokenCheck, check_reply_token, signed_purpose


class StaffAuthority(NamedTuple):
    """A staff member's reply that may act: its checked token, holder and application."""

    check: TokenCheck
    sender: str
    staff: Staff
    application: Application


class ApplicantAuthority(NamedTuple):
    """An applicant's or manager's reply that may act: its token, sender and application."""

    token: Token
    sender: str
    application: Application


class Refusal(NamedTuple):
    """A reply without authority, and why (a reason code: the audit log, the staff answer)."""

    check: TokenCheck
    sender: str
    reason: str


def keys_for(session: Session, ctx: ReviewContext, token_text: str) -> Keyring:
    """The keys to check ``token_text`` with: read again from the database when none of this
    process's keys signed it (another process may have rotated them)."""
    return verifying_keyring(
        session,
        ctx.settings,
        lambda keys: signed_purpose(keys, token_text, ctx.now) is not None,
    )


def staff_authority(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
    purpose: Purpose,
) -> StaffAuthority | Refusal:
    """A staff reply's authority for ``purpose`` (review or cancel), or why it has none."""
    keys = keys_for(session, ctx, token_text)
    check = check_reply_token(session, keys, token_text, purpose=purpose, now=ctx.now)
    sender = (mail.from_address or "").lower()
    problem = _staff_problem(session, ctx, check, sender, inbound)
    if problem is not None:
        return Refusal(check, sender, problem)
    assert check.token is not None
    staff = session.get(Staff, check.token.staff_id)
    application = session.get(Application, check.token.application_id)
    assert staff is not None and application is not None
    return StaffAuthority(check, sender, staff, application)


def applicant_authority(
    session: Session, ctx: ReviewContext, mail: ParsedMail, token_text: str
) -> ApplicantAuthority | Refusal:
    """An applicant's or manager's reply: a valid APPLICANT token issued to its From address."""
    keys = keys_for(session, ctx, token_text)
    check = check_reply_token(session, keys, token_text, purpose=Purpose.APPLICANT, now=ctx.now)
    sender = (mail.from_address or "").lower()
    token = check.token
    if not check.ok or token is None or (token.recipient or "").lower() != sender:
        reason = f"token_{check.refusal}" if not check.ok else "from_is_not_the_addressee"
        return Refusal(check, sender, reason)
    application = session.get(Application, token.application_id)
    assert application is not None
    return ApplicantAuthority(token, sender, application)


def _staff_problem(
    session: Session, ctx: ReviewContext, check: TokenCheck, sender: str, inbound: InboundMessage
) -> str | None:
    if not check.ok:
        return f"token_{check.refusal}"
    assert check.token is not None
    staff = session.get(Staff, check.token.staff_id)
    if staff is None or staff.email != sender:
        return "from_is_not_the_token_holder"
    if not staff.active:
        return "staff_inactive"
    if ctx.settings.review_envelope_check and not envelope_agrees(inbound.envelope_from, sender):
        return "envelope_sender_differs"
    if ctx.settings.trusted_authserv_id and not _authenticated(ctx.settings, inbound, sender):
        return "not_authenticated"
    return None


def _authenticated(settings: Settings, inbound: InboundMessage, sender: str) -> bool:
    """DKIM or DMARC pass for the From's domain, in a header the trusted server added (which
    ones those are depends on the channel: mailbot.authres)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(bytes(inbound.raw)).items()
    domain = sender.rpartition("@")[2]
    return authenticated(
        [(name, str(value)) for name, value in headers],
        settings.trusted_authserv_id,
        domain,
        channel=inbound.channel,
        trusted_relays=settings.trusted_relay_networks,
    )
