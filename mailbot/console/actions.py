"""What staff do on the console, each in the caller's transaction and each audited.

Decisions go through exactly the code a reply by mail goes through (:func:`mailbot.review.decide`
and :func:`mailbot.review.cancel_application`): the same checks, the same notices, the same
audit events, with ``via="web"``; four-eyes approval counts the approvals of both ways together
(they are the same ``approval`` events) and refuses a second one by the same person. The form
carries the version of the application the page showed; before deciding, the application's row
is re-read under a lock and:

* decided in the meantime (by reply, say): ``decide`` refuses with "already decided by X at T",
  and nothing changes;
* still under review but changed (another approver moved the start date): refused, as a reply
  to an older review request is ("application_changed"), and the page is to be looked at again.

Quarantined messages are reprocessed (back in the worker's queue) or discarded with a reason
(status ``done``, kind ``discarded``, kept and audited); failed notices are retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from db.models import (
    INBOUND_DONE,
    INBOUND_QUARANTINED,
    UNDER_REVIEW,
    Application,
    AuditEvent,
    OutboundMessage,
    Staff,
)
from mailbot.applications import find_application, locked
from mailbot.calendar import BusinessCalendar
from mailbot.dates import InvalidDate, parse_date
from mailbot.errors import BilingualError, MailbotError
from mailbot.outbox import retry_outbox
from mailbot.review import (
    Action,
    Decision,
    DecisionError,
    ReviewContext,
    cancel_application,
    decide,
)
from mailbot.schedule_table import registration_dates
from mailbot.staff import find_staff
from mailbot.worker import get_inbound, requeue

DISCARDED = "discarded"  # the kind a discarded message is recorded as (status done)


class ConsoleError(BilingualError):
    """Something the console refuses to do as asked (says what, and what to do)."""


@dataclass(frozen=True)
class Done:
    """What an action did, for the page (and a warning worth knowing, if any)."""

    result: str
    warning_ja: str = ""
    warning_en: str = ""


def _locked(session: Session, receipt_no: str) -> Application:
    """The application re-read under a row lock (PostgreSQL; SQLite holds the writer lock), so a
    decision by reply committing meanwhile is seen, and none can commit until this one has."""
    return locked(session, find_application(session, receipt_no))


def _same_version(application: Application, version: int) -> None:
    if application.status == UNDER_REVIEW and application.version != version:
        raise ConsoleError(
            ja=f"この画面を開いた後に申込受付番号 {application.receipt_no} が変わりました"
            "（利用開始日の変更など）。ページを開き直して、内容を確かめてから操作してください。",
            en=f"{application.receipt_no} changed after you opened the page (its start date, "
            "say): open it again and check it before you decide.",
        )


@dataclass(frozen=True)
class Asked:
    """A decision asked for on the console: by whom, on which application, at the version of
    it that the page showed, and in which review context (settings, calendar, now)."""

    ctx: ReviewContext
    by: str
    receipt_no: str
    version: int


def approve(session: Session, asked: Asked, *, start_date: str = "", force: bool = False) -> Done:
    """Approve as ``asked.by`` (with another start date when given): "approved", or
    "approval_recorded" while more approvals are needed."""
    application, staff = _still_as_shown(session, asked)
    warning = ("", "")
    if start_date.strip() and application.status == UNDER_REVIEW:
        warning = _check_start_date(session, asked.ctx.calendar, start_date, force)
    decision = Decision(Action.APPROVE, start_date_text=start_date.strip() or None)
    return Done(decide(session, asked.ctx, application, staff, decision, via="web"), *warning)


def reject(session: Session, asked: Asked, *, reason: str) -> Done:
    application, staff = _still_as_shown(session, asked)
    decision = Decision(Action.REJECT, reason=reason.strip())
    return Done(decide(session, asked.ctx, application, staff, decision, via="web"))


def _still_as_shown(session: Session, asked: Asked) -> tuple[Application, Staff]:
    """The application, locked, at the version the page showed; and who decides."""
    application = _locked(session, asked.receipt_no)
    staff = find_staff(session, asked.by)
    _same_version(application, asked.version)
    return application, staff


def _check_start_date(
    session: Session, calendar: BusinessCalendar, text: str, force: bool
) -> tuple[str, str]:
    """As ``mailbot approve`` checks it: a day that is no business day needs ``force``; one that
    is no registration date is allowed, with a warning."""
    try:
        day = parse_date(text)
    except InvalidDate:
        return ("", "")  # decide says what is wrong with it
    if not calendar.is_business_day(day) and not force:
        raise ConsoleError(
            ja=f"{day.isoformat()} は営業日ではありません（土日・祝日・年末年始）。"
            "営業日を指定するか、「営業日以外でも承認する」にチェックを入れてください。",
            en=f"{day.isoformat()} is no business day (weekend, holiday or 12/29–1/3): give a "
            "business day, or tick 'approve even so'.",
        )
    if day not in set(registration_dates(session)):
        return (
            f"{day.isoformat()} はスケジュール表のシステム登録日ではありません。",
            f"{day.isoformat()} is not a registration date in the schedule.",
        )
    return ("", "")


def cancel(session: Session, asked: Asked, *, reason: str) -> Done:
    application = _locked(session, asked.receipt_no)
    if application.version != asked.version:
        raise ConsoleError(
            ja=f"この画面を開いた後に申込受付番号 {application.receipt_no} の状況が変わりました"
            f"（{application.decided_by or '-'}、{application.status}）。"
            "ページを開き直してください。",
            en=f"{application.receipt_no} changed after you opened the page (now "
            f"{application.status}, by {application.decided_by or '-'}): open it again.",
        )
    settings = asked.ctx.settings
    cancel_application(
        session,
        settings,
        asked.receipt_no,
        by=asked.by,
        reason=reason.strip(),
        now=asked.ctx.now,
        apply_time=settings.apply_time,
        via="web",
    )
    return Done("cancelled")


# --- quarantine and notices ----------------------------------------------------------------------


def _audit(
    session: Session,
    event: str,
    actor: str,
    now: datetime,
    *,
    inbound_id: int | None = None,
    application_id: int | None = None,
    **detail: object,
) -> None:
    session.add(
        AuditEvent(
            at=now,
            application_id=application_id,
            event=event,
            actor=actor,
            inbound_id=inbound_id,
            detail={**detail, "via": "web"},
        )
    )


def reprocess(session: Session, now: datetime, *, by: str, inbound_id: int) -> Done:
    """Put a quarantined message back in the worker's queue."""
    requeue(session, inbound_id)
    _audit(session, "inbound_reprocessed", by, now, inbound_id=inbound_id)
    return Done("reprocessed")


def discard(session: Session, now: datetime, *, by: str, inbound_id: int, reason: str) -> Done:
    """Give up on a quarantined message: kept (as processed, kind ``discarded``), never
    processed, its raw bytes removed after the retention time like any processed mail."""
    if not reason.strip():
        raise ConsoleError(
            ja="破棄する理由を書いてください（監査ログに残ります）。",
            en="Give the reason for discarding it (it goes to the audit log).",
        )
    inbound = get_inbound(session, inbound_id)
    if inbound.status != INBOUND_QUARANTINED:
        raise MailbotError(
            f"message {inbound_id} is {inbound.status}, not quarantined; only quarantined "
            "messages can be discarded"
        )
    inbound.status = INBOUND_DONE
    inbound.kind = DISCARDED
    inbound.processed_at = now
    session.add(inbound)
    _audit(session, "inbound_discarded", by, now, inbound_id=inbound_id, reason=reason.strip())
    return Done("discarded")


def retry_notice(session: Session, now: datetime, *, by: str, outbound_id: int) -> Done:
    retry_outbox(session, outbound_id, now=now)
    row = session.get(OutboundMessage, outbound_id)
    _audit(
        session,
        "notice_retried",
        by,
        now,
        application_id=row.application_id if row else None,
        outbound_id=outbound_id,
    )
    return Done("retried")


__all__ = [
    "DISCARDED",
    "Asked",
    "ConsoleError",
    "DecisionError",
    "Done",
    "approve",
    "cancel",
    "discard",
    "reject",
    "reprocess",
    "retry_notice",
]
