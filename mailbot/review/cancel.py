"""Cancelling an approved application before its start date.

Two ways in, one code path: ``mailbot cancel`` and a staff member's reply ``取消 理由`` to the
mail that told them the approval took effect (handled in mailbot.review.replies, which checks
the reply's authority and then calls :func:`cancel_application` here).

Staff only (an active staff member: ``--by``, or the reply token's holder), only while the
application is approved and its start date has not come. In one transaction: the application
becomes ``cancelled``, its items stop holding the IDs (a new application may name them), its
date job is removed from the scheduler's job store, the audit log records who, why and how
(``via``, and the reply's inbound message), and the applicant and manager are told. The job
row goes in the same transaction (:func:`scheduler.job_rows.remove_apply_job`), not through a
running scheduler, which is in another process.

A cancellation cannot race the apply: both lock the application row (PostgreSQL) or hold the
single writer lock (SQLite), and each acts only on an ``approved`` application.
"""

from __future__ import annotations

from datetime import datetime, time

from sqlmodel import Session

from db.models import (
    APPROVED,
    CANCELLED,
    Application,
    Staff,
)
from mailbot import notices
from mailbot.applications import STATUS_JA, find_application, finish, locked
from mailbot.applying import MIDNIGHT, is_due, run_time
from mailbot.config import Settings
from mailbot.dates import ja_date
from mailbot.errors import BilingualError
from mailbot.notify import application_context, queue_staff_mail, send_to_applicants, status_url
from mailbot.staff import active_staff, find_staff
from scheduler.job_rows import remove_apply_job


class CancelError(BilingualError):
    """The application cannot be cancelled (not approved, its start date has come, no reason)."""

    def __init__(self, *, ja: str, en: str, can_retry: bool = False) -> None:
        super().__init__(ja=ja, en=en)
        self.can_retry = can_retry  # the same request, corrected, may still succeed


def cancel_application(
    session: Session,
    settings: Settings,
    receipt_no: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    apply_time: time = MIDNIGHT,
    via: str = "cli",
    inbound_id: int | None = None,
) -> Application:
    """Cancel ``receipt_no`` in the caller's transaction; the cancelled application.

    ``via`` and ``inbound_id`` (the reply that asked for it, when by mail) go to the audit log.
    Whether it can be cancelled at all is checked before whether the reason is given, so that
    nobody is asked for a reason only to be told it is too late.
    """
    staff = find_staff(session, by)  # NotFoundError unless an active staff member
    application = locked(session, find_application(session, receipt_no))
    _check_cancellable(application, settings, now, apply_time)
    if not reason.strip():
        raise CancelError(
            ja="取消の理由を書いてください（例：取消 申込者から取消の依頼がありました）。"
            "理由は申込者に通知されます。",
            en="give the reason for the cancellation; the applicant reads it",
            can_retry=True,
        )
    finish(
        session,
        application,
        CANCELLED,
        actor=staff.email,
        now=now,
        via=via,
        reason=reason,
        inbound_id=inbound_id,
    )
    remove_apply_job(session, application.receipt_no)
    session.flush()
    send_to_applicants(
        session,
        settings,
        application,
        notices.CANCELLED,
        now=now,
        status_url=status_url(session, settings, application.receipt_no, now),
        reason=reason,
    )
    _tell_other_staff(session, settings, application, canceller=staff, reason=reason, now=now)
    return application


def _tell_other_staff(
    session: Session,
    settings: Settings,
    application: Application,
    *,
    canceller: Staff,
    reason: str,
    now: datetime,
) -> None:
    """The rest of the team learn of it (the canceller ran the command or got a confirmation)."""
    context = {
        **application_context(session, application),
        "actor": canceller.email,
        "cancel_reason": reason,
    }
    for member in active_staff(session):
        if member.id == canceller.id:
            continue
        queue_staff_mail(
            session,
            settings,
            member,
            notices.CANCELLED_STAFF,
            context,
            cause=notices.application_cause(application.receipt_no),
            application_id=application.id,
            now=now,
        )


def _check_cancellable(
    application: Application, settings: Settings, now: datetime, apply_time: time
) -> None:
    if application.status != APPROVED:
        status_ja = STATUS_JA.get(application.status, application.status)
        raise CancelError(
            ja=f"申込受付番号 {application.receipt_no} は「{status_ja}」のため取り消せません。"
            "取り消せるのは承認済みで利用開始日前の申込だけです。",
            en=f"{application.receipt_no} is {application.status}; only an approved application "
            "can be cancelled",
        )
    assert application.start_date is not None
    if is_due(application.start_date, now, settings.zone, apply_time):
        due = run_time(application.start_date, settings.zone, apply_time)
        raise CancelError(
            ja=f"申込受付番号 {application.receipt_no} は利用開始日 "
            f"{ja_date(application.start_date)} {apply_time:%H:%M} を過ぎたため取り消せません。"
            "変更は反映済みか反映中です。",
            en=f"{application.receipt_no}: its start date {application.start_date.isoformat()} "
            f"has come ({due.isoformat()}); it is applied or about to be, and can no longer be "
            "cancelled",
        )
