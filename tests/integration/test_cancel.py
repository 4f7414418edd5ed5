"""Cancelling an approved application before its start date (``mailbot cancel``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from db.engine import session_scope
from db.models import Application, ApplicationItem, AuditEvent, SchedulerJob
from mailbot.applying import apply_due, apply_job_id
from mailbot.calendar import BusinessCalendar
from mailbot.cancel import CancelError, cancel_application
from mailbot.decisions import Action, Decision
from mailbot.errors import NotFoundError
from mailbot.review import ReviewContext, decide
from mailbot.staff import find_staff
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.requests import SATO, YAMADA, form, mail

START = date(2026, 12, 15)
TOKYO_MIDNIGHT = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)  # 2026-12-15 00:00 in Tokyo
REASON = "申込者から電話で取消の依頼がありました"


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    return harness_factory()


def approved(h: Harness, *user_ids: str) -> str:
    h.round_trip(mail(form(*(user_ids or ("1ANACA0A", "1ANACA0B")), start=START)))
    ctx = ReviewContext(settings=h.settings, calendar=BusinessCalendar(), now=h.now)
    with session_scope(h.engine) as session:
        application = session.scalars(
            select(Application).order_by(col(Application.id).desc())
        ).first()
        assert application is not None
        decide(
            session,
            ctx,
            application,
            find_staff(session, STAFF),
            Decision(Action.APPROVE),
            via="cli",
        )
        # The date job the scheduler's sync would have set (its state is APScheduler's).
        session.add(
            SchedulerJob(
                id=apply_job_id(application.receipt_no),
                next_run_time=TOKYO_MIDNIGHT.timestamp(),
                job_state=b"-",
            )
        )
        return application.receipt_no


def cancel(
    h: Harness,
    receipt_no: str,
    *,
    by: str = STAFF,
    reason: str = REASON,
    now: datetime | None = None,
) -> Application:
    with session_scope(h.engine) as session:
        return cancel_application(
            session, h.settings, receipt_no, by=by, reason=reason, now=now or h.now
        )


def application(h: Harness, receipt_no: str) -> Application:
    with session_scope(h.engine) as session:
        return session.scalars(
            select(Application).where(col(Application.receipt_no) == receipt_no)
        ).one()


def open_items(h: Harness, receipt_no: str) -> int:
    with session_scope(h.engine) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(ApplicationItem)
                .join(Application, col(Application.id) == col(ApplicationItem.application_id))
                .where(
                    col(Application.receipt_no) == receipt_no, col(ApplicationItem.open).is_(True)
                )
            ).scalar_one()
        )


def jobs(h: Harness) -> list[str]:
    with session_scope(h.engine) as session:
        return list(session.scalars(select(col(SchedulerJob.id))))


def test_cancel_before_the_start_date(h: Harness) -> None:
    receipt_no = approved(h)
    h.deliver()
    h.new_mail()
    cancelled = cancel(h, receipt_no)
    assert (cancelled.status, cancelled.decision_reason, cancelled.decided_by) == (
        "cancelled",
        REASON,
        STAFF,
    )
    assert open_items(h, receipt_no) == 0
    assert jobs(h) == []  # its date job went with it, in the same transaction
    with session_scope(h.engine) as session:
        event = session.scalars(
            select(AuditEvent).where(col(AuditEvent.event) == "cancelled")
        ).one()
    assert (event.actor, event.detail["reason"], event.detail["start_date"]) == (
        STAFF,
        REASON,
        "2026-12-15",
    )

    h.deliver()
    notices = h.new_mail()
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in notices) == [SATO, YAMADA]
    text = body_text(notices[0])
    assert (
        f"申込受付番号 {receipt_no} のお申込みは、審査終了（承認）後に当センターで取り消しました。"
        in text
    )
    assert REASON in text and "1ANACA0A" in text

    # The start date comes and goes: nothing is applied.
    assert apply_due(h.engine, h.settings, TOKYO_MIDNIGHT).applied == []
    # The IDs are free again: the same request is accepted anew.
    again = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    assert any("受付完了" in str(m["Subject"]) for m in again)


def test_only_staff_and_only_with_a_reason(h: Harness) -> None:
    receipt_no = approved(h)
    with pytest.raises(NotFoundError, match="not an active staff member"):
        cancel(h, receipt_no, by=YAMADA)
    with pytest.raises(CancelError, match="reason"):
        cancel(h, receipt_no, reason="  ")
    assert application(h, receipt_no).status == "approved"
    assert jobs(h) == [apply_job_id(receipt_no)]


def test_not_once_the_start_date_has_come(h: Harness) -> None:
    receipt_no = approved(h)
    with pytest.raises(CancelError, match="has come"):
        cancel(h, receipt_no, now=TOKYO_MIDNIGHT)
    cancel(h, receipt_no, now=TOKYO_MIDNIGHT - timedelta(seconds=1))  # a second earlier: fine


def test_only_approved_applications(h: Harness) -> None:
    h.round_trip(mail(form("1ANACA0A", start=START)))
    (under_review,) = h.applications()
    with pytest.raises(CancelError, match="is under_review"):
        cancel(h, under_review.receipt_no)
    applied = approved(h, "1ANAC001")
    apply_due(h.engine, h.settings, TOKYO_MIDNIGHT)
    with pytest.raises(CancelError, match="is applied"):
        cancel(h, applied, now=TOKYO_MIDNIGHT - timedelta(days=1))
