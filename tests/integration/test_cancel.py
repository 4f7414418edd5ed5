"""Cancelling an approved application before its start date: ``mailbot cancel``, and a staff
member's reply ``取消 理由`` to the notice that their approval took effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from db.engine import session_scope
from db.models import Application, ApplicationItem, AuditEvent, InboundMessage, SchedulerJob
from mailbot.applying import apply_due, apply_job_id
from mailbot.calendar import BusinessCalendar
from mailbot.errors import NotFoundError
from mailbot.review import Action, CancelError, Decision, ReviewContext, cancel_application, decide
from mailbot.staff import add_staff, find_staff
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.replies import reply_address, reply_to
from tests.support.requests import OUTSIDER, SATO, YAMADA, form, mail
from tests.support.review import STAFF2, START, answer, refusals, to

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


def test_the_rest_of_the_team_is_told_of_a_cancellation(h: Harness) -> None:
    colleague = "colleague@mailbot.localhost"
    with session_scope(h.engine) as session:
        add_staff(session, colleague, "同僚 三郎")
    receipt_no = approved(h)
    h.deliver()
    h.new_mail()
    cancel(h, receipt_no)
    h.deliver()
    to_staff = [m for m in h.new_mail() if "承認が取り消されました" in str(m["Subject"])]
    # The colleague is told; the canceller, who ran the command, is not mailed about it.
    assert [str(m["To"].addresses[0].addr_spec) for m in to_staff] == [colleague]
    text = body_text(to_staff[0])
    assert receipt_no in text and STAFF in text and REASON in text


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


# --- by reply ----------------------------------------------------------------------------------

APPROVED_SUBJECT = "【NSS】承認が確定しました（260001A）"


AUTHENTICATED = (
    b"Authentication-Results: mx.mailbot.localhost; dkim=pass header.d=mailbot.localhost\r\n"
)


def approved_by_reply(h: Harness, *, authenticated: bool = False) -> EmailMessage:
    """Request 260001A, approve it by replying to the review request; the approval notice the
    staff member gets. The date job is set as the scheduler's sync would have set it."""
    sent = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    review = next(m for m in sent if "審査依頼" in str(m["Subject"]) and to(m) == STAFF)
    raw = (AUTHENTICATED if authenticated else b"") + reply_to(review, sender=STAFF, body="承認")
    out = h.round_trip(raw, mail_from=STAFF, rcpt_to=reply_address(review))
    assert application(h, "260001A").status == "approved"
    with session_scope(h.engine) as session:
        session.add(
            SchedulerJob(
                id=apply_job_id("260001A"),
                next_run_time=TOKYO_MIDNIGHT.timestamp(),
                job_state=b"-",
            )
        )
    (notice,) = [m for m in out if str(m["Subject"]) == APPROVED_SUBJECT]
    assert to(notice) == STAFF
    assert reply_address(notice) != reply_address(review)  # a new token: the old one is used
    return notice


def test_the_approval_notice_tells_the_staff_member_how_to_cancel(h: Harness) -> None:
    notice = approved_by_reply(h)
    text = body_text(notice)
    assert "申込受付番号 260001A（TYO01 ○○株式会社 東京事業所）の承認が確定しました。" in text
    assert "■利用開始日：2026年12月15日（火） 00:00" in text
    assert "取消 申込者から取消の依頼がありました" in text
    assert text.index("取消") < text.index("[English]") < text.index('"cancel"')
    assert reply_address(notice).startswith("apply+t")


def test_cancel_by_replying_to_the_approval_notice(h: Harness) -> None:
    notice = approved_by_reply(h)
    out = answer(h, notice, STAFF, f"取消 {REASON}")

    cancelled = application(h, "260001A")
    assert (cancelled.status, cancelled.decision_reason, cancelled.decided_by) == (
        "cancelled",
        REASON,
        STAFF,
    )
    assert open_items(h, "260001A") == 0
    assert jobs(h) == []
    with session_scope(h.engine) as session:
        event = session.scalars(
            select(AuditEvent).where(col(AuditEvent.event) == "cancelled")
        ).one()
        inbound = session.get(InboundMessage, event.inbound_id)
        assert inbound is not None
        reply_message_id = inbound.message_id
    assert (event.actor, event.detail["reason"], event.detail["via"]) == (STAFF, REASON, "mail")
    assert reply_message_id is not None and reply_message_id.startswith("<")

    notices = [m for m in out if str(m["Subject"]) == "【NSS】利用申込取消のお知らせ（260001A）"]
    assert sorted(to(m) for m in notices) == [SATO, YAMADA]
    assert REASON in body_text(notices[0])
    (confirmation,) = [m for m in out if to(m) == STAFF]
    assert "承認を取り消しました" in str(confirmation["Subject"])
    assert REASON in body_text(confirmation)
    assert not any("Traceback" in body_text(m) for m in out)

    # The start date comes and goes: nothing is applied.
    assert apply_due(h.engine, h.settings, TOKYO_MIDNIGHT).applied == []


def test_the_cancel_address_works_once(h: Harness) -> None:
    notice = approved_by_reply(h)
    answer(h, notice, STAFF, f"取消 {REASON}")
    again = answer(h, notice, STAFF, "取消 もう一度")
    assert application(h, "260001A").decision_reason == REASON
    assert refusals(h) == ["token_used"]
    (refused,) = again
    assert to(refused) == STAFF and "受け付けできませんでした" in str(refused["Subject"])


def test_reason_on_the_next_line_and_signature_ignored(h: Harness) -> None:
    notice = approved_by_reply(h)
    answer(h, notice, STAFF, "キャンセルします\n理由：重複した申込です\n-- \n審査 太郎")
    assert (application(h, "260001A").status, application(h, "260001A").decision_reason) == (
        "cancelled",
        "重複した申込です",
    )


def test_another_sender_cannot_use_the_cancel_address(h: Harness) -> None:
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
    notice = approved_by_reply(h)
    assert answer(h, notice, OUTSIDER, f"取消 {REASON}") == []  # outsiders learn nothing
    (told,) = answer(h, notice, STAFF2, f"取消 {REASON}")  # staff: a short refusal
    assert to(told) == STAFF2 and "受け付けできませんでした" in str(told["Subject"])
    assert refusals(h) == ["from_is_not_the_token_holder"] * 2
    assert application(h, "260001A").status == "approved"
    assert jobs(h) == [apply_job_id("260001A")]
    # The holder's own reply still works: refusals did not use the token up.
    answer(h, notice, STAFF, f"取消 {REASON}")
    assert application(h, "260001A").status == "cancelled"


def test_a_removed_staff_member_cannot_cancel(h: Harness) -> None:
    from mailbot.staff import remove_staff

    notice = approved_by_reply(h)
    with session_scope(h.engine) as session:
        remove_staff(session, STAFF)
    answer(h, notice, STAFF, f"取消 {REASON}")
    assert application(h, "260001A").status == "approved"
    assert refusals(h) == ["staff_inactive"]


def test_unauthenticated_reply_refused_when_a_trusted_server_is_set(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory(
        # The test's SMTP client plays the trusted MTA in front (its Received, its A-R).
        trusted_authserv_id="mx.mailbot.localhost",
        trusted_relays="127.0.0.1",
    )
    notice = approved_by_reply(h, authenticated=True)
    answer(h, notice, STAFF, f"取消 {REASON}")  # no Authentication-Results from mx
    assert application(h, "260001A").status == "approved"
    assert refusals(h) == ["not_authenticated"]
    raw = AUTHENTICATED + reply_to(notice, sender=STAFF, body=f"取消 {REASON}")
    h.round_trip(raw, mail_from=STAFF, rcpt_to=reply_address(notice))
    assert application(h, "260001A").status == "cancelled"


def test_too_late_once_the_start_date_has_come(h: Harness) -> None:
    notice = approved_by_reply(h)
    h.now = TOKYO_MIDNIGHT
    (told,) = answer(h, notice, STAFF, f"取消 {REASON}")
    assert str(told["Subject"]) == "【NSS】取り消しできませんでした"
    text = body_text(told)
    assert "利用開始日 2026年12月15日（火） 00:00 を過ぎたため取り消せません" in text
    assert "can no longer be cancelled" in text
    assert application(h, "260001A").status == "approved"
    assert jobs(h) == [apply_job_id("260001A")]


def test_not_once_the_application_is_no_longer_approved(h: Harness) -> None:
    notice = approved_by_reply(h)
    cancel(h, "260001A")  # someone else cancelled it with the command meanwhile
    (told,) = [m for m in answer(h, notice, STAFF, "取消 重複") if to(m) == STAFF]
    assert "取り消せません" in body_text(told) and "is cancelled" in body_text(told)
    assert application(h, "260001A").decision_reason == REASON  # the first cancellation's


def test_not_once_it_is_applied(h: Harness) -> None:
    notice = approved_by_reply(h)
    apply_due(h.engine, h.settings, TOKYO_MIDNIGHT)
    h.now = TOKYO_MIDNIGHT + timedelta(hours=9)
    (told,) = [m for m in answer(h, notice, STAFF, f"取消 {REASON}") if to(m) == STAFF]
    assert "取り消せません" in body_text(told) and "is applied" in body_text(told)
    assert application(h, "260001A").status == "applied"


def test_missing_reason_is_asked_for_and_the_address_still_works(h: Harness) -> None:
    notice = approved_by_reply(h)
    (told,) = answer(h, notice, STAFF, "取消")
    assert str(told["Subject"]) == "【NSS】取り消しできませんでした"
    assert "取消の理由を書いてください" in body_text(told)
    assert "返信先アドレスは引き続き使えます" in body_text(told)
    assert application(h, "260001A").status == "approved"
    answer(h, notice, STAFF, f"取消\n{REASON}")
    assert application(h, "260001A").status == "cancelled"


def test_unreadable_command_is_answered(h: Harness) -> None:
    notice = approved_by_reply(h)
    # The quoted notice itself says 取消 (in its instructions): it must not count.
    (told,) = answer(h, notice, STAFF, "確認しました。ありがとうございます。")
    assert str(told["Subject"]) == "【NSS】取消の指示を読み取れませんでした"
    assert "取消 申込者から取消の依頼がありました" in body_text(told)
    (told,) = answer(h, notice, STAFF, "承認")  # a cancel address does nothing else
    assert str(told["Subject"]) == "【NSS】取消の指示を読み取れませんでした"
    assert application(h, "260001A").status == "approved"


def test_a_review_token_cannot_cancel(h: Harness) -> None:
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
    sent = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    review = {to(m): m for m in sent if "審査依頼" in str(m["Subject"])}
    answer(h, review[STAFF], STAFF, "承認")
    (told,) = answer(h, review[STAFF2], STAFF2, f"取消 {REASON}")  # unused, but for review
    assert "審査済み" in str(told["Subject"])
    assert "承認確定のお知らせメールに「取消 理由」と返信" in body_text(told)
    assert application(h, "260001A").status == "approved"
