"""Decisions: approve and reject (by reply or ``mailbot approve`` / ``reject``), two-person
approval, a withdrawal, and what each changes and tells whom.

A decision by mail arrives here only once its reply's authority is established
(mailbot.review.authority); the CLI comes with the operator's ``--by`` in place of the token,
through the same :func:`decide` and the same audit. The status change itself is
:func:`mailbot.applications.finish`.

When an approval takes effect, each approver is told so in a mail whose reply address carries a
new token of purpose CANCEL (the review token is used up and bound to the version before the
approval); a ``取消 理由`` reply to it cancels through mailbot.review.cancel.
"""

from __future__ import annotations

from datetime import date, timedelta, tzinfo
from typing import Any

from sqlmodel import Session, col, select

from db.models import (
    APPROVED,
    REJECTED,
    UNDER_REVIEW,
    WITHDRAWN,
    Application,
    AuditEvent,
    Staff,
)
from mailbot import notices
from mailbot.addresses import tagged_address
from mailbot.applications import DECISION_JA, application_items, audit, finish, locked
from mailbot.applying import is_due, run_time
from mailbot.config import Settings
from mailbot.dates import InvalidDate, parse_date
from mailbot.errors import BilingualError
from mailbot.keys import keyring
from mailbot.logs import add_log_fields
from mailbot.notify import application_context, queue_staff_mail, send_to_applicants, status_url
from mailbot.registry_queries import registry_view
from mailbot.review.commands import Action, Decision
from mailbot.review.context import ReviewContext
from mailbot.review.requests import REVIEW_TAG, send_review_requests
from mailbot.schedule_table import registration_dates
from mailbot.staff import active_staff
from mailbot.tokens import Purpose, issue_reply_token


class DecisionError(BilingualError):
    """A decision that cannot be taken as given (bad date, missing reason, already decided)."""


def decide(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    decision: Decision,
    *,
    via: str,
    inbound_id: int | None = None,
    expected_version: int | None = None,
) -> str:
    """Apply one staff decision (mail, web or CLI). Returns what happened.

    ``expected_version``: the version the staff member saw (a reply token's), checked under the
    lock, so a change committed meanwhile (another reviewer's new start date) is never approved
    by someone who saw only the old one."""
    add_log_fields(receipt_no=application.receipt_no)
    # Re-read under a row lock (PostgreSQL; SQLite's writer lock serialises anyway): a
    # decision taken another way (a reply, the console, the CLI) that committed since the
    # caller read the application is seen here and refused, never decided a second time.
    locked(session, application)
    if not staff.active:
        raise DecisionError(
            ja=f"{staff.email} は有効な審査担当者ではありません。",
            en=f"{staff.email} is not active staff",
        )
    if application.status != UNDER_REVIEW:
        info = decided(application, ctx.settings.zone)
        raise DecisionError(
            ja=f"申込受付番号 {application.receipt_no} は {info['decided_at']} に "
            f"{info['decided_by']} が{info['status_ja']}済みです。",
            en=f"{application.receipt_no} was already decided by {info['decided_by']} at "
            f"{info['decided_at']}",
        )
    if expected_version is not None and application.version != expected_version:
        raise DecisionError(
            ja=f"申込受付番号 {application.receipt_no} の内容は、このメールの後に変更されました"
            "（別の審査担当者が利用開始日を変更した等）。新しい審査依頼メールに返信してください。",
            en=f"{application.receipt_no} changed after this mail was sent (another staff "
            "member proposed another start date, for instance); reply to the new review request",
        )
    if decision.action is Action.APPROVE:
        start = _staff_start_date(decision, ctx.today)
        return _approve(session, ctx, application, staff, start, via=via, inbound_id=inbound_id)
    if decision.action is Action.REJECT:
        if not decision.reason.strip():
            raise DecisionError(
                ja="却下の理由を「却下」の後に書いてください（例：却下 利用者IDが誤っています）。",
                en="Write the reason after 'reject' (e.g. 'reject: wrong user ID').",
            )
        _reject(session, ctx, application, staff, decision.reason, via=via, inbound_id=inbound_id)
        return "rejected"
    raise DecisionError(ja="取下げは申込者のみが行えます。", en="Only the applicant can withdraw.")


def _staff_start_date(decision: Decision, today: date) -> date | None:
    """Staff may set any date from today on (an emergency takes effect the same day)."""
    if decision.start_date_text is None:
        return None
    try:
        start = parse_date(decision.start_date_text)
    except InvalidDate:
        raise DecisionError(
            ja=f"利用開始日「{decision.start_date_text}」を日付として読めません（例：2026年12月15日）。",
            en=f"Cannot read the start date {decision.start_date_text!r} (e.g. 2026-12-15).",
        ) from None
    if start < today:
        raise DecisionError(
            ja=f"利用開始日 {start.isoformat()} は過去の日付です。"
            "本日以降の日付を指定してください。",
            en=f"The start date {start.isoformat()} is in the past; give today or later.",
        )
    return start


def _approvals(session: Session, application: Application) -> list[AuditEvent]:
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.application_id == application.id)
        .where(AuditEvent.event == "approval")
        .order_by(col(AuditEvent.id))
    ).all()
    return [e for e in events if e.detail.get("version") == application.version]


def progress(session: Session, application: Application, settings: Settings) -> dict[str, Any]:
    approvers = sorted({e.actor for e in _approvals(session, application)})
    return {
        "receipt_no": application.receipt_no,
        "approvers": approvers,
        "approvals_required": settings.approvals_required,
    }


def _approve(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    start: date | None,
    *,
    via: str,
    inbound_id: int | None,
) -> str:
    earlier = _approvals(session, application)
    if any(e.actor == staff.email for e in earlier):
        raise DecisionError(
            ja="この申込はすでにあなたが承認しています。別の審査担当者の承認を待っています。",
            en="You approved this application already; it waits for another staff member.",
        )
    more_needed = len(earlier) + 1 < ctx.settings.approvals_required
    if more_needed and start is not None and start != application.proposed_start_date:
        # The others were asked to review another start date: their approvals (and tokens)
        # are for the old version, so they are asked again about this one.
        earlier = []
        _change_proposed_date(session, ctx, application, staff, start, inbound_id)
    audit(
        session,
        application,
        "approval",
        actor=staff.email,
        now=ctx.now,
        inbound_id=inbound_id,
        version=application.version,
        start_date=start.isoformat() if start else None,
        via=via,
    )
    session.flush()
    if more_needed:
        return "approval_recorded"
    chosen = start or _latest_requested_date(earlier) or application.proposed_start_date
    _finish(session, ctx, application, APPROVED, staff.email, inbound_id, via=via)
    application.start_date = chosen
    if chosen not in set(registration_dates(session)):
        audit(
            session,
            application,
            "start_date_not_registration_date",
            actor=staff.email,
            now=ctx.now,
            inbound_id=inbound_id,
            start_date=chosen.isoformat(),
        )
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.CONFIRMATION_COMPLETE,
        status_url=status_url(session, ctx.settings, application.receipt_no, ctx.now),
        now=ctx.now,
    )
    _tell_approvers(session, ctx, application, {e.actor for e in earlier} | {staff.email})
    return "approved"


def _tell_approvers(
    session: Session, ctx: ReviewContext, application: Application, approvers: set[str]
) -> None:
    """Each approver learns that the approval took effect and, while the start date is still
    ahead, how to cancel it: their own single-use CANCEL token in the Reply-To (the review
    token they answered with is used up, and bound to the version before the approval)."""
    assert application.id is not None and application.start_date is not None
    settings = ctx.settings
    cancellable = not is_due(application.start_date, ctx.now, settings.zone, settings.apply_time)
    context = {
        **application_context(session, application),
        "approvers": sorted(approvers),
        "apply_time": settings.apply_time.strftime("%H:%M"),
        "cancellable": cancellable,
        "status_url": status_url(session, settings, application.receipt_no, ctx.now),
    }
    for member in active_staff(session):
        if member.email not in approvers:
            continue
        reply_to = _cancel_address(session, ctx, application, member) if cancellable else None
        queue_staff_mail(
            session,
            settings,
            member,
            notices.APPROVED_STAFF,
            context,
            cause=notices.application_cause(application.receipt_no),
            version=application.version,
            application_id=application.id,
            reply_to=reply_to,
            now=ctx.now,
        )


def _cancel_address(
    session: Session, ctx: ReviewContext, application: Application, member: Staff
) -> str:
    """A reply address with a CANCEL token for ``member``, bound to the approved version.

    It lives until the start date's apply time plus the review token lifetime: past the start
    date it can cancel nothing (:func:`cancel_application` refuses), but a late reply then gets
    the clear "too late" answer rather than a bare refusal of an expired token.
    """
    assert application.id is not None and application.start_date is not None
    due = run_time(application.start_date, ctx.settings.zone, ctx.settings.apply_time)
    token = issue_reply_token(
        session,
        keyring(session, ctx.settings),
        purpose=Purpose.CANCEL,
        application_id=application.id,
        version=application.version,
        staff_id=member.id,
        now=ctx.now,
        lifetime=due - ctx.now + timedelta(days=ctx.settings.review_token_days),
    )
    return tagged_address(ctx.settings, REVIEW_TAG + token)


def _change_proposed_date(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    start: date,
    inbound_id: int | None,
) -> None:
    audit(
        session,
        application,
        "start_date_changed",
        actor=staff.email,
        now=ctx.now,
        inbound_id=inbound_id,
        old=application.proposed_start_date.isoformat(),
        new=start.isoformat(),
    )
    application.proposed_start_date = start
    application.version += 1
    application.updated_at = ctx.now
    session.add(application)
    session.flush()
    items = application_items(session, application)
    view = registry_view(
        session,
        sender=application.sender,
        office_code=application.office_code,
        user_ids=[i.key for i in items if i.kind == "user_id"],
        user_codes=[i.key for i in items if i.kind == "user_code"],
    )
    send_review_requests(session, ctx.settings, application, view=view, now=ctx.now, skip=staff)


def _latest_requested_date(events: list[AuditEvent]) -> date | None:
    for event in reversed(events):
        if event.detail.get("start_date"):
            return date.fromisoformat(str(event.detail["start_date"]))
    return None


def _reject(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    reason: str,
    *,
    via: str,
    inbound_id: int | None,
) -> None:
    _finish(session, ctx, application, REJECTED, staff.email, inbound_id, via=via, reason=reason)
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.REJECTION,
        status_url=status_url(session, ctx.settings, application.receipt_no, ctx.now),
        reason=reason,
        now=ctx.now,
    )


def withdraw(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    *,
    actor: str,
    reason: str,
    inbound_id: int | None,
) -> None:
    _finish(session, ctx, application, WITHDRAWN, actor, inbound_id, via="mail", reason=reason)
    context = {**application_context(session, application), "actor": actor, "reason": reason}
    for member in active_staff(session):
        queue_staff_mail(
            session,
            ctx.settings,
            member,
            notices.WITHDRAWN_STAFF,
            context,
            cause=notices.application_cause(application.receipt_no),
            application_id=application.id,
            now=ctx.now,
        )
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.WITHDRAWN,
        reason=reason,
        actor=actor,
        now=ctx.now,
    )


def _finish(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    status: str,
    actor: str,
    inbound_id: int | None,
    *,
    via: str,
    reason: str | None = None,
) -> None:
    """The status change (mailbot.applications.finish), made at the review's "now"."""
    finish(
        session,
        application,
        status,
        actor=actor,
        now=ctx.now,
        via=via,
        reason=reason,
        inbound_id=inbound_id,
    )


def decided(application: Application, zone: tzinfo) -> dict[str, Any]:
    """Who decided ``application`` and when (in ``zone``, MAILBOT_TIMEZONE, with its offset,
    as the CLI shows times), as the answer to a late decision shows it."""
    moment = application.decided_at
    return {
        "receipt_no": application.receipt_no,
        "status_ja": DECISION_JA.get(application.status, application.status),
        "decided_by": application.decided_by or "-",
        "decided_at": moment.astimezone(zone).isoformat(timespec="minutes") if moment else "-",
    }
