"""Render notices from templates and put them in the outbox, inside the caller's transaction.

Which notices there are (template, subject, audience, cap, dedupe key) is the catalogue,
mailbot.notices; this module renders them. Every notice is rendered once, here; the outbox then
delivers the stored bytes, so a retry sends exactly what was decided at the time. Most notices
are rendered in the transaction that causes them. The applied notice, of which one start date
may bring tens of thousands, is queued as an intent by that transaction (mailbot.applying) and
rendered here by :func:`render_intent` when the outbox first claims it (:func:`intent_renderer`
is what serve gives the outbox for that); its facts come from the ``applied`` audit event
committed with the change, so rendering later says what happened then.

Dedupe keys (mailbot.notices.dedupe_key) name the cause, the notice and the recipient, so
processing the same cause twice can never mail anyone twice. Automatic replies to a sender
(problems, refusals, help, short answers) are capped per address per day; notices about real
applications are not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlmodel import Session, col, select

from db.models import Application, AuditEvent, Office, OutboundMessage, Staff
from mailbot.addresses import tagged_address
from mailbot.applications import STATUS_JA, application_items
from mailbot.blank_form import blank_form_text, write_blank_form
from mailbot.compose import AUTO_REPLIED, Attachment, ComposedMail, compose
from mailbot.config import Settings
from mailbot.dates import ja_date
from mailbot.errors import MailbotError
from mailbot.keys import keyring
from mailbot.mime import ParsedMail
from mailbot.normalize import network_of
from mailbot.notices import (
    APPLIED,
    HELP,
    RECEIPT_COMPLETE,
    REFUSAL,
    REQUEST_PROBLEMS,
    Notice,
    application_cause,
    dedupe_key,
    inbound_cause,
)
from mailbot.outbox import IntentRenderer, enqueue
from mailbot.problems import Problem
from mailbot.reply_limits import OUTSIDER_REPLY_MAX_BYTES, take_reply_allowance
from mailbot.tokens import Purpose, issue_reply_token, link_token
from mailbot.upcoming import Upcoming

APPLICANT_TAG = "a"  # apply+a<token>@domain: the applicant's or manager's replies


def network_ja(user_id: str) -> str:
    return "netNACCS" if network_of(user_id) == "netnaccs" else "一般NACCS"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mailbot", "templates/mail"),
        undefined=StrictUndefined,  # a missing value is a bug, never a blank in a customer mail
        autoescape=False,  # plain-text mail
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["ja_date"] = ja_date
    env.filters["network_ja"] = network_ja
    return env


def render(notice: Notice, **context: Any) -> str:
    """The body of ``notice`` from its template (mailbot.notices)."""
    return environment().get_template(notice.template).render(**context)


def references_of(mail: ParsedMail) -> list[str]:
    refs = list(mail.references)
    if mail.message_id:
        refs.append(mail.message_id)
    return refs


def queue_mail(
    session: Session,
    settings: Settings,
    notice: Notice,
    values: Mapping[str, Any],
    *,
    to: str,
    key: str,
    now: datetime,
    to_name: str | None = None,
    application_id: int | None = None,
    inbound_id: int | None = None,
    reply_to: str | None = None,
    answering: ParsedMail | None = None,
    attachments: Sequence[Attachment] = (),
    auto_submitted: str = AUTO_REPLIED,
    max_bytes: int | None = None,
) -> bool:
    """Render ``notice`` with ``values`` (its subject too), compose it and put it in the outbox;
    False when the dedupe ``key`` was used."""
    composed = compose(
        settings,
        to=to,
        to_name=to_name,
        subject=notice.subject_for(values),
        body=render(notice, **values),
        kind=notice.kind,
        in_reply_to=answering.message_id if answering else None,
        references=references_of(answering) if answering else (),
        reply_to=reply_to,
        attachments=attachments,
        auto_submitted=auto_submitted,
        now=now,
    )
    row_id = enqueue(
        session,
        composed,
        kind=notice.kind,
        dedupe_key=key,
        recipient=to,
        application_id=application_id,
        inbound_id=inbound_id,
        now=now,
        max_bytes=max_bytes,
    )
    return row_id is not None


def queue_staff_mail(
    session: Session,
    settings: Settings,
    member: Staff,
    notice: Notice,
    values: Mapping[str, Any],
    *,
    cause: str,
    now: datetime,
    version: int | None = None,
    application_id: int | None = None,
    inbound_id: int | None = None,
    reply_to: str | None = None,
) -> bool:
    """A mail to one staff member, ``staff_name`` theirs: addressed by name,
    ``Auto-Submitted: auto-generated`` (it answers no mail of theirs), not capped here (staff
    are not robots to be protected from). ``cause`` and ``version``: its dedupe key."""
    return queue_mail(
        session,
        settings,
        notice,
        {**values, "staff_name": member.name},
        to=member.email,
        to_name=member.name or None,
        key=dedupe_key(cause, notice, member.email, version=version),
        application_id=application_id,
        inbound_id=inbound_id,
        reply_to=reply_to,
        auto_submitted="auto-generated",
        now=now,
    )


# --- automatic replies to a sender (capped) -----------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Who and what an automatic reply answers."""

    inbound_id: int
    mail: ParsedMail
    to: str


def send_reply(
    session: Session,
    settings: Settings,
    reply: Reply,
    notice: Notice,
    values: Mapping[str, Any],
    *,
    now: datetime,
    attach_form: bool = False,
    attachments: Sequence[Attachment] = (),
) -> bool:
    """An error, help, refusal or short answer, within mailbot.reply_limits: never to the null
    sender or mailbot's own addresses; to an outsider only short text, without the form or
    any other attachment."""
    assert notice.capped, f"{notice.kind} is no reply to a sender"
    allowance = take_reply_allowance(
        session, settings, to=reply.to, inbound_id=reply.inbound_id, now=now
    )
    if not allowance.granted:
        return False
    if allowance.outsider:
        attachments = []
    elif attach_form:
        attachments = [write_blank_form("xlsx"), *attachments]
    return queue_mail(
        session,
        settings,
        notice,
        values,
        to=reply.to,
        key=dedupe_key(inbound_cause(reply.inbound_id), notice, reply.to),
        inbound_id=reply.inbound_id,
        answering=reply.mail,
        attachments=attachments,
        max_bytes=OUTSIDER_REPLY_MAX_BYTES if allowance.outsider else None,
        now=now,
    )


def problems_body(
    organisation: str,
    problems: Sequence[Problem],
    *,
    name: str | None,
    office: Any,
    schedule: Upcoming,
) -> str:
    """Every problem in one reply, numbered; notes (``note.…``: a check left out because it
    depends on a broken value) after them; the next registration dates; the blank form."""
    values = _problems_values(organisation, problems, name=name, office=office, schedule=schedule)
    return render(REQUEST_PROBLEMS, **values)


def _problems_values(
    organisation: str,
    problems: Sequence[Problem],
    *,
    name: str | None,
    office: Any,
    schedule: Upcoming,
) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "problems": [problem for problem in problems if not problem.code.startswith("note.")],
        "notes": [problem for problem in problems if problem.code.startswith("note.")],
        "name": name,
        "office": office,
        "schedule": schedule,
        "blank_form": blank_form_text(),
    }


def send_problems(
    session: Session,
    settings: Settings,
    reply: Reply,
    problems: list[Problem],
    *,
    name: str | None,
    office: Any,
    schedule: Upcoming,
    now: datetime,
) -> bool:
    values = _problems_values(
        settings.organisation, problems, name=name, office=office, schedule=schedule
    )
    return send_reply(session, settings, reply, REQUEST_PROBLEMS, values, now=now, attach_form=True)


def send_refusal(session: Session, settings: Settings, reply: Reply, *, now: datetime) -> bool:
    """The neutral refusal: one text for every outsider, whatever they named."""
    values = {"organisation": settings.organisation}
    return send_reply(session, settings, reply, REFUSAL, values, now=now)


def send_help(
    session: Session, settings: Settings, reply: Reply, *, schedule: Upcoming, now: datetime
) -> bool:
    values = {
        "organisation": settings.organisation,
        "intake_address": settings.intake_address,
        "lead_business_days": settings.lead_business_days,
        "schedule": schedule,
        "blank_form": blank_form_text(),
    }
    return send_reply(session, settings, reply, HELP, values, now=now, attach_form=True)


# --- notices about an application (not capped) ---------------------------------------------------


def application_context(session: Session, application: Application) -> dict[str, Any]:
    """Everything the application templates show, read back from the database."""
    items = application_items(session, application)
    pending = {code: tuple(offices) for code, offices in application.shared_codes_pending.items()}
    return {
        "application": application,
        "receipt_no": application.receipt_no,
        "received_on": application.received_on,
        "status_ja": STATUS_JA.get(application.status, application.status),
        "office": office_view(session.get(Office, application.office_code)),
        "user_ids": [i.key for i in items if i.kind == "user_id"],
        "codes_abolished": [i.key for i in items if i.kind == "user_code" and i.key not in pending],
        "shared_codes_pending": pending,
        "desired_start_date": application.desired_start_date,
        "proposed_start_date": application.proposed_start_date,
        "start_date": application.start_date,
        "start_date_differs": application.proposed_start_date != application.desired_start_date,
        "applicant_name": application.applicant_name,
        "applicant_email": application.applicant_email,
        "applicant_phone": application.applicant_phone,
        "manager_name": application.manager_name,
        "manager_email": application.manager_email,
        "reason": application.reason,
        "remarks": application.remarks,
    }


def office_view(office: Office | None) -> dict[str, str] | None:
    """The office as the templates name its parts (same keys as rules.OfficeInfo)."""
    if office is None:
        return None
    return {
        "code": office.code,
        "company": office.company,
        "office": office.office_name,
        "department": office.department,
    }


def status_url(session: Session, settings: Settings, receipt_no: str, now: datetime) -> str:
    """The link in every notice: the application's page, with a token for this receipt only."""
    expires = now + timedelta(days=settings.link_token_days)
    token = link_token(keyring(session, settings), receipt_no, expires)
    return f"{settings.base_url}/a/{receipt_no}?t={token}"


def addressees(application: Application) -> dict[str, str]:
    """Applicant and manager (rule 7), each once even when they share an address."""
    return {
        application.applicant_email: application.applicant_name,
        application.manager_email: application.manager_name,
    }


def send_to_applicants(
    session: Session,
    settings: Settings,
    application: Application,
    notice: Notice,
    *,
    now: datetime,
    answering: ParsedMail | None = None,
    **extra: Any,
) -> int:
    """One copy of a notice each to the applicant and the manager, addressed 〇〇 様.

    Each copy's Reply-To carries a token for that recipient, so a reply (a withdrawal, say)
    is bound to this application and to the person it was mailed to.
    """
    assert application.id is not None
    context = {**application_context(session, application), **extra}
    sent = 0
    for address, name in addressees(application).items():
        composed = _compose_for(
            session,
            settings,
            application,
            Addressee(address, name),
            notice,
            context,
            now=now,
            answering=answering,
        )
        row_id = enqueue(
            session,
            composed,
            kind=notice.kind,
            dedupe_key=dedupe_key(application_cause(application.receipt_no), notice, address),
            recipient=address,
            application_id=application.id,
            inbound_id=application.inbound_id,
            now=now,
        )
        sent += row_id is not None
    return sent


@dataclass(frozen=True)
class Addressee:
    address: str
    name: str


def _compose_for(
    session: Session,
    settings: Settings,
    application: Application,
    to: Addressee,
    notice: Notice,
    context: Mapping[str, Any],
    *,
    now: datetime,
    answering: ParsedMail | None = None,
    message_id: str | None = None,
) -> ComposedMail:
    """One recipient's copy: a reply token for them in Reply-To, the body addressed to them."""
    assert application.id is not None
    token = issue_reply_token(
        session,
        keyring(session, settings),
        purpose=Purpose.APPLICANT,
        application_id=application.id,
        version=application.version,
        recipient=to.address,
        now=now,
        lifetime=timedelta(days=settings.link_token_days),
    )
    body = render(notice, name=to.name, organisation=settings.organisation, **context)
    return compose(
        settings,
        to=to.address,
        to_name=f"{to.name} 様",
        subject=notice.subject_for(context),
        body=body,
        kind=notice.kind,
        in_reply_to=answering.message_id if answering else None,
        references=references_of(answering) if answering else (),
        reply_to=tagged_address(settings, APPLICANT_TAG + token),
        now=now,
        message_id=message_id,
    )


# --- notices queued as intents, rendered when the outbox first claims them ----------------------


class IntentError(MailbotError):
    """An outbox intent that cannot be rendered (an unknown kind, its application gone)."""


def render_intent(
    session: Session, settings: Settings, row: OutboundMessage, now: datetime
) -> None:
    """Render an intent row in the caller's transaction: sets ``raw`` and ``subject``.

    Called by the outbox in the transaction that claims the row for its first attempt, so the
    stored bytes, the reply token in them and the claim commit together. The Message-ID is
    the one the intent was queued with.
    """
    if row.kind != APPLIED.kind:
        raise IntentError(f"outbox message {row.id}: no renderer for intents of kind {row.kind}")
    composed = _applied_notice(session, settings, row, now)
    row.raw = composed.raw
    row.subject = composed.subject
    session.add(row)


def intent_renderer(settings: Settings) -> IntentRenderer:
    """What the outbox renders intents with (serve's wiring gives it to mailbot.outbox)."""

    def render(session: Session, row: OutboundMessage, now: datetime) -> None:
        render_intent(session, settings, row, now)

    return render


def _applied_notice(
    session: Session, settings: Settings, row: OutboundMessage, now: datetime
) -> ComposedMail:
    """The applied notice for one recipient: the application now, the facts as audited."""
    application = session.get(Application, row.application_id)
    if application is None:
        raise IntentError(f"outbox message {row.id}: application {row.application_id} is gone")
    applied = _applied_detail(session, application)
    names = {address.strip(): name for address, name in addressees(application).items()}
    if row.recipient not in names:
        raise IntentError(
            f"outbox message {row.id}: {row.recipient} is neither applicant nor manager of "
            f"{application.receipt_no}"
        )
    context = {
        **application_context(session, application),
        "status_url": status_url(session, settings, application.receipt_no, now),
        "abolished_user_ids": applied["user_ids"],
        "abolished_codes": applied["user_codes"],
        "codes_still_active": applied["codes_still_active"],
    }
    return _compose_for(
        session,
        settings,
        application,
        Addressee(row.recipient, names[row.recipient]),
        APPLIED,
        context,
        now=now,
        message_id=row.message_id,  # fixed when the intent was queued
    )


def _applied_detail(session: Session, application: Application) -> dict[str, Any]:
    """The ``applied`` audit event's detail: what applying changed, recorded as it happened."""
    detail = session.exec(
        select(AuditEvent.detail)
        .where(AuditEvent.application_id == application.id, AuditEvent.event == APPLIED.kind)
        .order_by(col(AuditEvent.id).desc())
        .limit(1)
    ).first()
    if detail is None:
        raise IntentError(f"{application.receipt_no} has no applied event to tell about")
    return dict(detail)


def send_receipt_complete(
    session: Session,
    settings: Settings,
    application: Application,
    mail: ParsedMail,
    *,
    review_answer_from: date,
    status_url: str,
    now: datetime,
) -> int:
    """The receipt-complete notice (受付完了メール), at once, to applicant and manager."""
    return send_to_applicants(
        session,
        settings,
        application,
        RECEIPT_COMPLETE,
        answering=mail,
        review_answer_from=review_answer_from,
        status_url=status_url,
        now=now,
    )
