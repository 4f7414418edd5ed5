"""What happens to one stored message: classify, parse, check, and answer, in one transaction.

The worker (mailbot.worker) claims a message and calls :func:`process_message` inside the
claiming transaction; whatever this writes (application, items, audit events, outbox rows)
commits together with the message's ``done`` status, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from db.models import AuditEvent, InboundMessage
from mailbot import notices
from mailbot.addresses import is_own_address, reply_tag
from mailbot.applications import create_application
from mailbot.calendar import BusinessCalendar
from mailbot.classify import Kind, bounced_message_ids, classify
from mailbot.config import Settings
from mailbot.contract import send_contract
from mailbot.draft import read_draft
from mailbot.mime import ParsedMail, parse_headers, parse_mail
from mailbot.normalize import clean_name
from mailbot.notify import (
    APPLICANT_TAG,
    Reply,
    send_help,
    send_problems,
    send_receipt_complete,
    send_refusal,
    send_reply,
    status_url,
)
from mailbot.outbox import mark_bounced
from mailbot.outcome import Outcome
from mailbot.parsers.select import read_request
from mailbot.registry_queries import is_registered_contact, registry_view
from mailbot.reply_limits import is_known_sender
from mailbot.review import (
    REVIEW_TAG,
    ReviewContext,
    handle_applicant_reply,
    handle_review_reply,
    send_review_requests,
)
from mailbot.rules import (
    NOT_AUTHORIZED,
    OfficeInfo,
    Plan,
    RegistryView,
    check_request,
    which_office,
)
from mailbot.schedule_table import registration_dates
from mailbot.upcoming import Upcoming, load_upcoming, upcoming


@dataclass(frozen=True)
class IntakeContext:
    settings: Settings
    calendar: BusinessCalendar


def process_message(
    session: Session, inbound: InboundMessage, ctx: IntakeContext, now: datetime
) -> Outcome:
    """Handle one message; return its outcome. Raises only on bugs or database failures."""
    mail = parse_mail(bytes(inbound.raw), max_attachment_bytes=ctx.settings.max_message_bytes)
    kind = classify(
        mail,
        inbound.envelope_from,
        intake_address=ctx.settings.intake_address,
        own_domain=ctx.settings.domain,
    ).kind
    if kind is Kind.BOUNCE:
        mark_bounced(session, bounced_message_ids(mail))
        return Outcome.BOUNCE
    if kind is Kind.AUTO_REPLY:
        return Outcome.AUTO_REPLY  # RFC 3834: never answer a robot
    if kind is Kind.OTHER:
        return Outcome.IGNORED  # e.g. our own mail looping back: answering could start a loop
    if kind is Kind.REPLY or _sent_to_reply_address(inbound, ctx.settings):
        return _reply(session, inbound, mail, ctx, now)
    sender = mail.from_address
    if not sender:
        return Outcome.UNREADABLE  # nobody to answer; the raw bytes stay for an operator
    reply = Reply(inbound_id=_id(inbound), mail=mail, to=sender)
    if kind is Kind.CONTRACT:
        return _contract(session, mail, reply, ctx, now)
    if kind is Kind.HELP:
        if is_known_sender(session, sender):
            send_help(session, ctx.settings, reply, schedule=_upcoming(session, ctx, now), now=now)
        else:
            _send_outsider_help(session, ctx.settings, reply, now)
        return Outcome.HELP
    return _request(session, inbound, mail, reply, ctx, now)


def _send_outsider_help(session: Session, settings: Settings, reply: Reply, now: datetime) -> None:
    """Help for someone who is not a registered contact: a short text saying from where to ask
    (anyone can forge a From, so no form and nothing worth forging it for)."""
    values = {"organisation": settings.organisation, "intake_address": settings.intake_address}
    send_reply(session, settings, reply, notices.HELP_OUTSIDER, values, now=now)


def _contract(
    session: Session, mail: ParsedMail, reply: Reply, ctx: IntakeContext, now: datetime
) -> Outcome:
    """契約内容確認: the contract to a registered contact; to anyone else the neutral refusal,
    the very reply a request gets, so asking reveals nothing a request would not."""
    if not is_registered_contact(session, reply.to):
        send_refusal(session, ctx.settings, reply, now=now)
        return Outcome.REFUSED
    send_contract(
        session,
        ctx.settings,
        reply,
        sender_name=clean_name(mail.from_name) if "@" not in mail.from_name else "",
        calendar=ctx.calendar,
        now=now,
    )
    return Outcome.CONTRACT


def answer_unreadable(
    session: Session, inbound: InboundMessage, ctx: IntakeContext, now: datetime
) -> bool:
    """Tell a known sender that their message could not be processed (the worker quarantined
    it). Read from the headers alone, since the body is what failed; robots, mailbot's own
    addresses and outsiders get nothing. True when a reply was queued."""
    mail = parse_headers(bytes(inbound.raw))
    classification = classify(
        mail,
        inbound.envelope_from,
        intake_address=ctx.settings.intake_address,
        own_domain=ctx.settings.domain,
    )
    sender = mail.from_address
    if not classification.may_answer or not sender or not is_known_sender(session, sender):
        return False
    reply = Reply(inbound_id=_id(inbound), mail=mail, to=sender)
    values = {"organisation": ctx.settings.organisation}
    return send_reply(session, ctx.settings, reply, notices.UNREADABLE, values, now=now)


def _upcoming(session: Session, ctx: IntakeContext, now: datetime) -> Upcoming:
    """The next registration dates as of ``now``'s Japanese date, for a reply."""
    today = now.astimezone(ctx.settings.zone).date()
    return load_upcoming(session, ctx.calendar, today, ctx.settings.lead_business_days)


def _id(inbound: InboundMessage) -> int:
    assert inbound.id is not None
    return inbound.id


def _sent_to_reply_address(inbound: InboundMessage, settings: Settings) -> bool:
    return any(
        is_own_address(address, settings) and reply_tag(address) is not None
        for address in inbound.envelope_to
    )


def _reply(
    session: Session, inbound: InboundMessage, mail: ParsedMail, ctx: IntakeContext, now: datetime
) -> Outcome:
    """A reply to one of mailbot's reply addresses: the tag says whose token it carries."""
    review = ReviewContext(settings=ctx.settings, calendar=ctx.calendar, now=now)
    for address in inbound.envelope_to:
        tag = reply_tag(address) if is_own_address(address, ctx.settings) else None
        if tag and tag.startswith(REVIEW_TAG):
            return handle_review_reply(session, review, inbound, mail, tag[len(REVIEW_TAG) :])
        if tag and tag.startswith(APPLICANT_TAG):
            return handle_applicant_reply(session, review, inbound, mail, tag[len(APPLICANT_TAG) :])
    session.add(
        AuditEvent(
            at=now,
            event="follow_up_received",
            actor=mail.from_address or inbound.envelope_from or "",
            inbound_id=inbound.id,
            detail={"to": list(inbound.envelope_to), "subject": mail.subject},
        )
    )
    return Outcome.FOLLOW_UP


def _request(
    session: Session,
    inbound: InboundMessage,
    mail: ParsedMail,
    reply: Reply,
    ctx: IntakeContext,
    now: datetime,
) -> Outcome:
    sender = reply.to
    # Outsiders get the neutral refusal before any parsing: the answer must not depend on
    # what they wrote, or it would tell them something about the registry.
    if not is_registered_contact(session, sender):
        send_refusal(session, ctx.settings, reply, now=now)
        return Outcome.REFUSED
    form = read_request(
        mail,
        max_attachments=ctx.settings.max_attachments,
        max_attachment_bytes=ctx.settings.max_attachment_bytes,
    )
    if not form.fields and form.problems:
        # Nothing readable (a garbage file, a zip bomb, a refused format): say only that, not
        # that every field is missing.
        send_problems(
            session,
            ctx.settings,
            reply,
            form.problems,
            name=None,
            office=None,
            schedule=_upcoming(session, ctx, now),
            now=now,
        )
        return Outcome.INVALID
    # Every value that could be read is checked against the registry too, so one reply names
    # every problem (parser problems first, then the draft's, then the rules').
    draft = read_draft(form, sender)
    today = now.astimezone(ctx.settings.zone).date()
    dates = registration_dates(session, on_or_after=today)
    view = registry_view(
        session,
        sender=sender,
        office_code=draft.office_code,
        user_ids=draft.user_ids,
        user_codes=draft.abolish_user_codes,
    )
    outcome = check_request(
        draft,
        sender,
        view,
        dates,
        ctx.calendar,
        today,
        ctx.settings.lead_business_days,
    )
    if isinstance(outcome, Plan):
        return _accept(session, inbound, mail, outcome, view, ctx, now)
    if any(problem.code == NOT_AUTHORIZED.code for problem in outcome):
        send_refusal(session, ctx.settings, reply, now=now)
        return Outcome.REFUSED
    # Addressed to the office only when it is the sender's own: naming another office's name
    # would tell the sender it exists.
    office = which_office(draft.office_code, sender, view)
    send_problems(
        session,
        ctx.settings,
        reply,
        outcome,
        name=draft.applicant_name,
        office=office if isinstance(office, OfficeInfo) else None,
        schedule=upcoming(dates, ctx.calendar, today, ctx.settings.lead_business_days),
        now=now,
    )
    return Outcome.INVALID


def _accept(
    session: Session,
    inbound: InboundMessage,
    mail: ParsedMail,
    plan: Plan,
    view: RegistryView,
    ctx: IntakeContext,
    now: datetime,
) -> Outcome:
    """Number it, and in the same transaction queue the receipt notice and review requests."""
    received_on = now.astimezone(ctx.settings.zone).date()
    application = create_application(
        session,
        plan,
        sender=mail.from_address or "",
        inbound=inbound,
        received_on=received_on,
        now=now,
    )
    send_receipt_complete(
        session,
        ctx.settings,
        application,
        mail,
        review_answer_from=plan.review_answer_from,
        status_url=status_url(session, ctx.settings, application.receipt_no, now),
        now=now,
    )
    send_review_requests(session, ctx.settings, application, view=view, now=now)
    return Outcome.ACCEPTED
