"""Render notices from templates and put them in the outbox, inside the caller's transaction.

Every notice is rendered once, here; the outbox then delivers the stored bytes, so a retry
sends exactly what was decided at the time. Dedupe keys name the cause (inbound message or
application), the kind and the recipient, so processing the same cause twice can never mail
anyone twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlmodel import Session

from db.models import Application, Staff
from mailbot.addresses import application_reply_address
from mailbot.blank_form import blank_form_text
from mailbot.compose import compose
from mailbot.config import Settings
from mailbot.mime import ParsedMail
from mailbot.normalize import network_of
from mailbot.outbox import enqueue, take_autoreply_allowance
from mailbot.problems import Problem
from mailbot.rules import OfficeInfo, Plan

WEEKDAYS_JA = "月火水木金土日"
BLANK_FORM_FILENAME = "廃止申込書.txt"


def ja_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日（{WEEKDAYS_JA[day.weekday()]}）"


def network_ja(user_id: str) -> str:
    return "netNACCS" if network_of(user_id) == "netnaccs" else "一般NACCS"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mailbot", "templates"),
        undefined=StrictUndefined,  # a missing value is a bug, never a blank in a customer mail
        autoescape=False,  # plain-text mail
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["ja_date"] = ja_date
    env.filters["network_ja"] = network_ja
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


@dataclass(frozen=True)
class Reply:
    """Who and what an automatic reply answers."""

    inbound_id: int
    mail: ParsedMail
    to: str


def _subject(settings: Settings, text: str) -> str:
    return text  # compose() puts settings.subject_prefix in front


def _references(mail: ParsedMail) -> list[str]:
    refs = list(mail.references)
    if mail.message_id:
        refs.append(mail.message_id)
    return refs


def _enqueue_reply(
    session: Session,
    settings: Settings,
    reply: Reply,
    *,
    kind: str,
    subject: str,
    body: str,
    now: datetime,
    attach_form: bool,
) -> bool:
    """An error, help or refusal reply: capped per address per day so robots cannot loop."""
    if not take_autoreply_allowance(session, reply.to, now.date(), settings.autoreply_per_day):
        return False
    attachments = (
        [(BLANK_FORM_FILENAME, "text/plain", blank_form_text().encode("utf-8"))]
        if attach_form
        else []
    )
    composed = compose(
        settings,
        to=reply.to,
        to_name=None,
        subject=subject,
        body=body,
        kind=kind,
        in_reply_to=reply.mail.message_id,
        references=_references(reply.mail),
        attachments=attachments,
        now=now,
    )
    return (
        enqueue(
            session,
            composed,
            kind=kind,
            dedupe_key=f"inbound:{reply.inbound_id}:{kind}:{reply.to}",
            recipient=reply.to,
            inbound_id=reply.inbound_id,
            now=now,
        )
        is not None
    )


def send_problems(
    session: Session,
    settings: Settings,
    reply: Reply,
    problems: list[Problem],
    *,
    name: str | None,
    office: OfficeInfo | None,
    now: datetime,
) -> bool:
    body = render(
        "request_problems.txt.j2",
        organisation=settings.organisation,
        problems=problems,
        name=name,
        office=office,
        blank_form=blank_form_text(),
    )
    subject = _subject(settings, "利用者ID廃止申込を受け付けできませんでした（要修正）")
    return _enqueue_reply(
        session,
        settings,
        reply,
        kind="request_problems",
        subject=subject,
        body=body,
        now=now,
        attach_form=True,
    )


def send_refusal(session: Session, settings: Settings, reply: Reply, *, now: datetime) -> bool:
    """The neutral refusal: one text for every outsider, whatever they named."""
    body = render("refusal.txt.j2", organisation=settings.organisation)
    subject = _subject(settings, "お申込みを受け付けできませんでした")
    return _enqueue_reply(
        session,
        settings,
        reply,
        kind="refusal",
        subject=subject,
        body=body,
        now=now,
        attach_form=False,
    )


def send_help(session: Session, settings: Settings, reply: Reply, *, now: datetime) -> bool:
    body = render(
        "help.txt.j2",
        organisation=settings.organisation,
        intake_address=settings.intake_address,
        lead_business_days=settings.lead_business_days,
        blank_form=blank_form_text(),
    )
    subject = _subject(settings, "利用者IDの廃止申込の方法")
    return _enqueue_reply(
        session,
        settings,
        reply,
        kind="help",
        subject=subject,
        body=body,
        now=now,
        attach_form=True,
    )


def plan_context(application: Application, plan: Plan, office: OfficeInfo) -> dict[str, Any]:
    return {
        "receipt_no": application.receipt_no,
        "received_on": application.received_on,
        "office": office,
        "user_ids": plan.user_ids,
        "codes_abolished": plan.codes_abolished,
        "shared_codes_pending": dict(plan.shared_codes_pending),
        "desired_start_date": plan.desired_start_date,
        "proposed_start_date": plan.proposed_start_date,
        "start_date_differs": plan.start_date_differs,
        "review_answer_from": plan.review_answer_from,
        "applicant_name": plan.applicant_name,
        "applicant_email": plan.applicant_email,
        "applicant_phone": plan.applicant_phone,
        "manager_name": plan.manager_name,
        "manager_email": plan.manager_email,
        "reason": plan.reason,
        "remarks": plan.remarks,
    }


def send_receipt_complete(
    session: Session,
    settings: Settings,
    application: Application,
    plan: Plan,
    office: OfficeInfo,
    mail: ParsedMail,
    *,
    now: datetime,
) -> int:
    """The receipt-complete notice, one copy each to the applicant and the manager (rule 7)."""
    context = plan_context(application, plan, office)
    subject = _subject(settings, f"利用申込受付完了のお知らせ（{application.receipt_no}）")
    recipients = {plan.applicant_email: plan.applicant_name, plan.manager_email: plan.manager_name}
    sent = 0
    for address, name in recipients.items():
        body = render(
            "receipt_complete.txt.j2", organisation=settings.organisation, name=name, **context
        )
        composed = compose(
            settings,
            to=address,
            to_name=f"{name} 様",
            subject=subject,
            body=body,
            kind="receipt_complete",
            in_reply_to=mail.message_id,
            references=_references(mail),
            reply_to=application_reply_address(settings, application.receipt_no),
            now=now,
        )
        row = enqueue(
            session,
            composed,
            kind="receipt_complete",
            dedupe_key=f"application:{application.receipt_no}:receipt_complete:{address}",
            recipient=address,
            application_id=application.id,
            inbound_id=application.inbound_id,
            now=now,
        )
        sent += row is not None
    return sent


def send_staff_notice(
    session: Session,
    settings: Settings,
    application: Application,
    plan: Plan,
    office: OfficeInfo,
    staff: list[Staff],
    *,
    now: datetime,
) -> int:
    context = plan_context(application, plan, office)
    subject = _subject(settings, f"新しい廃止申込があります（{application.receipt_no}）")
    sent = 0
    for member in staff:
        body = render("staff_new_application.txt.j2", staff_name=member.name, **context)
        composed = compose(
            settings,
            to=member.email,
            to_name=member.name or None,
            subject=subject,
            body=body,
            kind="staff_new_application",
            auto_submitted="auto-generated",
            now=now,
        )
        row = enqueue(
            session,
            composed,
            kind="staff_new_application",
            dedupe_key=f"application:{application.receipt_no}:staff_new:{member.email}",
            recipient=member.email,
            application_id=application.id,
            now=now,
        )
        sent += row is not None
    return sent
