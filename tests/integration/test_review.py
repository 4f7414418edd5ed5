"""Staff review by reply over real SMTP: decisions, and every attack changing nothing."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col, select

from db.engine import session_scope
from db.models import AuditEvent
from mailbot.applications import find_application
from mailbot.calendar import BusinessCalendar
from mailbot.review import Action, Decision, DecisionError, ReviewContext, decide
from mailbot.staff import add_staff, find_staff
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.replies import reply_address, reply_to
from tests.support.requests import INTAKE, OUTSIDER, SATO, YAMADA, form, mail
from tests.support.review import (
    STAFF2,
    START,
    answer,
    refusals,
    status,
    submit,
    to,
    with_second_reviewer,
)


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    return with_second_reviewer(harness_factory())


# --- decisions ---------------------------------------------------------------------------------


def test_approve_sends_the_confirmation_complete_notice(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "承認します")
    (application,) = h.applications()
    assert (application.status, application.start_date) == ("approved", START)
    assert application.decided_by == STAFF
    notices = [m for m in out if str(m["Subject"]) == "【NSS】利用申込確認完了のお知らせ"]
    assert sorted(to(m) for m in notices) == [SATO, YAMADA]
    text = body_text(next(m for m in notices if to(m) == YAMADA))
    expected_start = (
        "○○株式会社 東京事業所 通関部\n山田 太郎 様\n\n"
        "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）です。\n\n"
        "NACCSのご利用ありがとうございます。\n"
        "申込内容の確認が完了しました。\n\n"
        "申込受付年月日：2026年11月27日（金）\n"
        "申込受付番号 ：260001A\n\n"
        "以下のURLから確定した申込内容と利用開始日を必ずご確認ください。\n"
    )
    assert text.startswith(expected_start)
    link = text[len(expected_start) :].splitlines()[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/a/260001A\?t=[A-Za-z0-9_.\-]+", link)
    assert "■確定した利用開始日：2026年12月15日（火）" in text
    assert "利用開始日は希望日と異なる場合がございます" in text
    with session_scope(h.engine) as session:
        events = [e.event for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))]
    assert events[-2:] == ["approval", "review_finished"]


def test_approve_with_a_new_start_date(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "承認\n利用開始日：2026年12月22日")
    assert h.applications()[0].start_date == date(2026, 12, 22)
    notice = next(m for m in out if to(m) == YAMADA)
    assert "■確定した利用開始日：2026年12月22日（火）" in body_text(notice)


def test_staff_may_set_an_emergency_date_today_with_a_warning(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "承認 利用開始日：2026/11/27")
    assert h.applications()[0].start_date == date(2026, 11, 27)
    # Its start date has come already: the approver is told it can no longer be cancelled,
    # and gets no cancel address.
    (notice,) = [m for m in out if to(m) == STAFF]
    assert "利用開始日を迎えているため、この承認は取り消せません。" in body_text(notice)
    assert notice["Reply-To"] is None
    with session_scope(h.engine) as session:
        warning = session.exec(
            select(AuditEvent).where(AuditEvent.event == "start_date_not_registration_date")
        ).one()
    assert warning.detail["start_date"] == "2026-11-27"


def test_a_start_date_in_the_past_is_refused_and_the_token_still_works(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "承認 利用開始日：2026/11/01")
    assert status(h) == "under_review"
    (answer_mail,) = out
    assert to(answer_mail) == STAFF and "過去の日付" in body_text(answer_mail)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    assert status(h) == "approved"


def test_reject_sends_the_reason_and_frees_the_ids(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "却下 利用者コードの全IDが含まれていません")
    assert status(h) == "rejected"
    notice = next(m for m in out if to(m) == YAMADA)
    assert "利用者コードの全IDが含まれていません" in body_text(notice)
    assert "お受けできませんでした" in body_text(notice)
    # The IDs are no longer held: the same request may be sent again.
    again = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    assert any("受付完了" in str(m["Subject"]) for m in again)


def test_reject_without_a_reason_is_refused(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "却下")
    assert status(h) == "under_review"
    assert "理由" in body_text(out[0])


def test_applicant_withdraws_by_replying_to_the_receipt_notice(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"receipt:{YAMADA}"], YAMADA, "取下げ\n誤って送信しました")
    (application,) = h.applications()
    assert (application.status, application.decision_reason) == ("withdrawn", "誤って送信しました")
    told = [m for m in out if to(m) in (STAFF, STAFF2)]
    assert len(told) == 2 and all("取り下げ" in str(m["Subject"]) for m in told)
    # A decision after the withdrawal: "already decided by … at …", nothing changes.
    late = answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    assert status(h) == "withdrawn"
    assert "yamada@example.co.jp" in body_text(late[0]) and "審査済み" in str(late[0]["Subject"])


def test_an_applicants_question_reaches_staff_who_can_answer_them_directly(h: Harness) -> None:
    sent = submit(h)
    question = "利用開始日を12月20日に変更できますか。\n山田"
    out = answer(h, sent[f"receipt:{YAMADA}"], YAMADA, question)
    assert status(h) == "under_review"  # free text changes nothing
    forwarded = {to(m): m for m in out}
    assert sorted(forwarded) == sorted([STAFF, STAFF2])
    message = forwarded[STAFF]
    (application,) = h.applications()
    assert str(message["Subject"]) == f"【NSS】申込者からの返信（{application.receipt_no}）"
    assert message["Reply-To"].addresses[0].addr_spec == YAMADA  # staff answer the applicant
    text = body_text(message)
    assert question in text
    assert "\n> " not in text  # the quoted notice is not forwarded
    assert application.receipt_no in text and "/a/" in text


def test_a_withdrawal_after_approval_goes_to_staff_and_the_applicant_is_told(
    h: Harness,
) -> None:
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    out = answer(h, sent[f"receipt:{YAMADA}"], YAMADA, "取下げ\n別の申込で対応します")
    assert status(h) == "approved"  # only staff can cancel now
    told = {to(m): m for m in out}
    assert sorted(told) == sorted([STAFF, STAFF2, YAMADA])
    assert "別の申込で対応します" in body_text(told[STAFF])
    answer_text = body_text(told[YAMADA])
    assert "審査終了（承認）" in answer_text and "取り下げできません" in answer_text
    assert "担当者に転送しました" in answer_text


def test_follow_ups_from_one_address_are_capped_per_day(harness_factory: HarnessFactory) -> None:
    h = harness_factory(autoreply_per_day=2)
    sent = submit(h)
    counts = [len(answer(h, sent[f"receipt:{YAMADA}"], YAMADA, f"質問 {n}")) for n in range(3)]
    assert counts == [1, 1, 0]  # one staff member each time, then the day's allowance is used


def test_a_follow_up_from_someone_else_with_the_token_reaches_nobody(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"receipt:{YAMADA}"], OUTSIDER, "この申込は誰のものですか")
    assert [to(m) for m in out if to(m) in (STAFF, STAFF2)] == []
    assert "from_is_not_the_addressee" in refusals(h)


def test_second_decision_is_told_who_decided_when(h: Harness) -> None:
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    late = answer(h, sent[f"review:{STAFF2}"], STAFF2, "却下 不要です")
    assert status(h) == "approved"
    (told,) = late
    assert to(told) == STAFF2
    # The time in MAILBOT_TIMEZONE, with its offset.
    assert STAFF in body_text(told) and "2026-11-27T10:00+09:00" in body_text(told)


def test_two_approvals_required(harness_factory: HarnessFactory) -> None:
    h = harness_factory(approvals_required=2)
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
    sent = submit(h)
    first = answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    assert status(h) == "under_review"
    assert "1 / 2" in body_text(first[0])
    second = answer(h, sent[f"review:{STAFF2}"], STAFF2, "承認")
    assert status(h) == "approved"
    assert any(str(m["Subject"]) == "【NSS】利用申込確認完了のお知らせ" for m in second)


def test_each_approver_gets_their_own_cancel_address(harness_factory: HarnessFactory) -> None:
    h = harness_factory(approvals_required=2)
    staff3 = "staff3@mailbot.localhost"
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
        add_staff(session, staff3)
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    second = answer(h, sent[f"review:{STAFF2}"], STAFF2, "承認")
    notices = {to(m): m for m in second if "承認が確定しました" in str(m["Subject"])}
    assert sorted(notices) == sorted([STAFF, STAFF2])  # not staff3, who did not approve
    assert reply_address(notices[STAFF]) != reply_address(notices[STAFF2])
    assert "承認：staff2@mailbot.localhost、staff@mailbot.localhost" in body_text(notices[STAFF])
    # One approver cancels; the other's address then gets "no longer approved".
    answer(h, notices[STAFF2], STAFF2, "取消 重複した申込です")
    assert status(h) == "cancelled"
    (late,) = answer(h, notices[STAFF], STAFF, "取消 重複")
    assert "取り消せません" in body_text(late)


# --- attacks: nothing changes ------------------------------------------------------------------


def test_from_forged_to_staff_without_a_token(h: Harness) -> None:
    submit(h)
    forged = mail("承認 260001A", sender=STAFF)
    h.round_trip(forged, mail_from=STAFF, rcpt_to=INTAKE)
    garbage_token = "apply+t" + "a" * 32 + "@mailbot.localhost"
    forged_reply = mail("承認", sender=STAFF)
    h.round_trip(forged_reply, mail_from=STAFF, rcpt_to=garbage_token)
    assert status(h) == "under_review"
    assert "token_bad_signature" in refusals(h)


def test_replayed_token(harness_factory: HarnessFactory) -> None:
    h = harness_factory(approvals_required=2)
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")  # the same token again
    assert status(h) == "under_review"
    assert "token_used" in refusals(h)


def test_token_of_another_application(h: Harness) -> None:
    first = submit(h)
    h.round_trip(mail(form("1ANAC001", start=START)))  # a second application, 260002A
    # Staff answers 260002A's… no: uses 260001A's address to say something about 260002A.
    answer(h, first[f"review:{STAFF}"], STAFF, "却下 260002A は不要")
    first_app, second_app = h.applications()
    assert first_app.status == "rejected"  # the token's own application, and only it
    assert second_app.status == "under_review"


def test_token_bound_to_another_staff_member(h: Harness) -> None:
    sent = submit(h)
    out = answer(
        h, sent[f"review:{STAFF}"], STAFF2, "承認", to=reply_address(sent[f"review:{STAFF}"])
    )
    assert status(h) == "under_review"
    assert refusals(h) == ["from_is_not_the_token_holder"]
    assert [to(m) for m in out] == [STAFF2]  # a staff address gets a short answer


def test_expired_token(h: Harness) -> None:
    sent = submit(h)
    h.now = h.now + timedelta(days=h.settings.review_token_days, seconds=1)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    assert status(h) == "under_review"
    assert refusals(h) == ["token_expired"]


def test_forwarded_review_mail_answered_by_an_outsider(h: Harness) -> None:
    sent = submit(h)
    out = answer(h, sent[f"review:{STAFF}"], OUTSIDER, "承認")
    assert status(h) == "under_review"
    assert out == []  # the outsider learns nothing
    assert refusals(h) == ["from_is_not_the_token_holder"]


def test_approve_only_in_the_quoted_part_under_a_reject_line(h: Harness) -> None:
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "却下 内容に誤りがあります\n\n> 承認")
    assert status(h) == "rejected"


def test_approve_only_in_the_quoted_part_is_no_decision(h: Harness) -> None:
    sent = submit(h)
    # The quoted review mail itself contains 承認 (in its instructions): it must not count.
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "")
    assert status(h) == "under_review"
    assert "読み取れませんでした" in str(out[0]["Subject"])


def test_forged_authentication_results_placed_by_the_sender(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory(
        # The test's SMTP client plays the trusted MTA in front (its Received, its A-R).
        trusted_authserv_id="mx.mailbot.localhost",
        trusted_relays="127.0.0.1",
    )
    sent = submit(h)
    forged = [
        ("Authentication-Results", "mx.mailbot.localhost; dkim=pass header.d=mailbot.localhost")
    ]
    raw = reply_to(sent[f"review:{STAFF}"], sender=STAFF, body="承認", headers_on_top=forged)
    # The trusted server's own Received line sits above what the sender wrote.
    received = (
        b"Received: from outside by mx.mailbot.localhost; Fri, 27 Nov 2026 10:00:00 +0900\r\n"
    )
    h.round_trip(received + raw, mail_from=STAFF, rcpt_to=reply_address(sent[f"review:{STAFF}"]))
    assert status(h) == "under_review"
    assert refusals(h) == ["not_authenticated"]
    # The same reply as the trusted server marks it (its header above its Received) acts.
    genuine = (
        b"Authentication-Results: mx.mailbot.localhost; dkim=pass header.d=mailbot.localhost\r\n"
        + received
        + reply_to(sent[f"review:{STAFF}"], sender=STAFF, body="承認")
    )
    h.round_trip(genuine, mail_from=STAFF, rcpt_to=reply_address(sent[f"review:{STAFF}"]))
    assert status(h) == "approved"


def test_reply_after_the_application_changed(harness_factory: HarnessFactory) -> None:
    h = harness_factory(approvals_required=2)
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2)
    sent = submit(h)
    renewed = answer(h, sent[f"review:{STAFF}"], STAFF, "承認 利用開始日：2026年12月22日")
    assert h.applications()[0].version == 2
    answer(h, sent[f"review:{STAFF2}"], STAFF2, "承認")  # the old review mail
    assert status(h) == "under_review"
    assert "application_changed" in refusals(h)
    new_request = next(m for m in renewed if to(m) == STAFF2)
    assert "2026年12月22日" in body_text(new_request)
    answer(h, new_request, STAFF2, "承認")
    (application,) = h.applications()
    assert (application.status, application.start_date) == ("approved", date(2026, 12, 22))


def test_removed_staff_member_cannot_decide(h: Harness) -> None:
    from mailbot.staff import remove_staff

    sent = submit(h)
    with session_scope(h.engine) as session:
        remove_staff(session, STAFF)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    assert status(h) == "under_review"
    assert refusals(h) == ["staff_inactive"]


# --- the same decisions from the command line --------------------------------------------------


def run_cli(h: Harness, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from mailbot.cli import main

    monkeypatch.setenv("MAILBOT_HOME", str(h.settings.home))
    monkeypatch.setenv("MAILBOT_DATABASE_URL", h.settings.database_url)
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out), pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0), out.getvalue()


def test_cli_approve_and_reject_follow_the_same_rules(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(h)
    code, output = run_cli(h, monkeypatch, "approve", "260001A", "--by", OUTSIDER)
    assert code == 1 and "not an active staff member" in output
    code, output = run_cli(
        h, monkeypatch, "approve", "260001a", "--by", STAFF, "--start-date", "2026/12/22"
    )
    assert code == 0, output
    (application,) = h.applications()
    assert (application.status, application.start_date) == ("approved", date(2026, 12, 22))
    h.now = datetime.now(UTC)  # the CLI runs on the real clock
    h.deliver()
    assert any(str(m["Subject"]) == "【NSS】利用申込確認完了のお知らせ" for m in h.new_mail())
    code, output = run_cli(h, monkeypatch, "reject", "260001A", "--by", STAFF2, "--reason", "x")
    assert code == 1 and "already decided by staff@mailbot.localhost" in output
    with session_scope(h.engine) as session:
        approval = session.exec(select(AuditEvent).where(AuditEvent.event == "approval")).one()
    assert (approval.actor, approval.detail["via"]) == (STAFF, "cli")


def test_an_approval_of_the_old_version_racing_a_new_start_date_is_refused(
    harness_factory: HarnessFactory,
) -> None:
    """Two approvals needed. STAFF approves with another start date (the version goes up and
    STAFF2 is asked again) while STAFF2's reply to the first request is being processed: its
    transaction read the old version (PostgreSQL) or waited for the writer (SQLite). Checked
    under the row lock, STAFF2's approval is refused: they never saw the new date."""
    h = with_second_reviewer(harness_factory(approvals_required=2))
    submit(h)
    ctx = ReviewContext(h.settings, BusinessCalendar(), h.now)
    outcome: list[str] = []
    read = threading.Event()

    def old_reply_decides() -> None:
        with session_scope(h.engine) as session:
            application = find_application(session, "260001A")
            read.set()
            try:
                decide(
                    session,
                    ctx,
                    application,
                    find_staff(session, STAFF2),
                    Decision(Action.APPROVE),
                    via="mail",
                    expected_version=1,  # the version STAFF2's review request was issued for
                )
                outcome.append("decided")
            except DecisionError as refused:
                outcome.append(refused.message_en)

    with session_scope(h.engine) as session:
        application = find_application(session, "260001A")
        staff = find_staff(session, STAFF)
        new_date = Decision(Action.APPROVE, start_date_text="2026年12月22日")
        assert decide(session, ctx, application, staff, new_date, via="mail") == (
            "approval_recorded"
        )
        racer = threading.Thread(target=old_reply_decides)
        racer.start()
        read.wait(timeout=2)  # PostgreSQL: it has read version 1; SQLite: it waits
        time.sleep(0.3)
    racer.join(timeout=30)
    assert len(outcome) == 1 and outcome[0].startswith("260001A changed after this mail")
    assert status(h) == "under_review"
    (changed,) = h.audit_events("start_date_changed")
    assert changed.detail["new"] == "2026-12-22"
