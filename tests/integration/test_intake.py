"""A request by SMTP to its answer in the relay: receipt notices, error replies, refusals.

Each test speaks SMTP to the real gateway, runs the real worker and outbox, and reads what
came out of the Maildir, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from db.engine import session_scope
from db.models import UserId
from tests.support.harness import Harness, body_text
from tests.support.requests import (
    INTAKE,
    KATO,
    OUTSIDER,
    SATO,
    YAMADA,
    form,
    html_mail,
    html_table_mail,
    mail,
)
from tests.support.smtp import as_sent

START = date(2026, 12, 15)  # a registration date, far enough ahead of the harness clock


def recipients(messages: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(str(m["To"].addresses[0].addr_spec) for m in messages)


# --- the receipt-complete notice ---------------------------------------------------------------


def test_valid_request_gets_receipt_notice_to_applicant_and_manager(harness: Harness) -> None:
    out = harness.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    notices = [m for m in out if "利用申込受付完了のお知らせ" in str(m["Subject"])]
    assert recipients(notices) == [SATO, YAMADA]
    assert {str(m["Subject"]) for m in notices} == {"【NSS】利用申込受付完了のお知らせ（260001A）"}
    applicant = next(m for m in notices if m["To"].addresses[0].addr_spec == YAMADA)
    text = body_text(applicant)
    assert text.startswith("○○株式会社 東京事業所 通関部\n山田 太郎 様")
    for expected in (
        "申込受付番号 ：260001A",
        "申込受付年月日：2026年11月27日（金）",
        "お問い合わせの際は、こちらの番号をお伝えください。",
        "1ANACA0A（netNACCS）",
        "1ANACA0B（netNACCS）",
        "■利用開始希望日：2026年12月15日（火）",
        "■利用開始日（予定）：2026年12月15日（火）",
        "利用開始日は希望日と異なる場合がございます",
        "回答は翌営業日（2026年11月30日（月））以降になることがあります。",
    ):
        assert expected in text, expected
    assert applicant["Auto-Submitted"] == "auto-replied"
    assert applicant["In-Reply-To"] is not None
    # Replies go to an address carrying a token for this application and this recipient.
    assert re.fullmatch(r"apply\+a[a-z2-7]{32}@mailbot\.localhost", str(applicant["Reply-To"]))
    assert "http://127.0.0.1:8080/a/260001A?t=" in text
    manager = next(m for m in notices if m["To"].addresses[0].addr_spec == SATO)
    assert "佐藤 花子 様" in body_text(manager)
    (application,) = harness.applications()
    assert (application.receipt_no, application.status) == ("260001A", "under_review")


def test_staff_get_a_review_request(harness: Harness) -> None:
    out = harness.round_trip(mail(form("1ANACA0A", start=START)))
    staff = [m for m in out if m["To"].addresses[0].addr_spec == "staff@mailbot.localhost"]
    assert len(staff) == 1
    assert "260001A" in str(staff[0]["Subject"])
    text = body_text(staff[0])
    assert "1ANACA0A" in text and "承認" in text and "却下" in text
    assert re.fullmatch(r"apply\+t[a-z2-7]{32}@mailbot\.localhost", str(staff[0]["Reply-To"]))


def test_desired_date_off_schedule_proposes_next_registration_date(harness: Harness) -> None:
    out = harness.round_trip(mail(form("1ANACA0A", start=date(2026, 12, 10))))
    text = body_text(out[0])
    assert "■利用開始希望日：2026年12月10日（木）" in text
    assert "■利用開始日（予定）：2026年12月15日（火）" in text
    assert "次のシステム登録日を予定しています" in text


def test_code_abolished_completely_is_named(harness: Harness) -> None:
    # OSK01 holds both IDs of 2BXYZ: listing them all abolishes the code too (rule 3).
    body = form(
        "2BXYZ001", "2BXYZ002", start=START, office_code="OSK01", manager_email="ito@example.co.jp"
    )
    out = harness.round_trip(mail(body, sender=KATO, sender_name="加藤 一郎"))
    assert "■あわせて廃止となる利用者コード\n  2BXYZ" in body_text(out[0])


def test_shared_code_notice_names_offices_still_to_apply(harness: Harness) -> None:
    # 1ANAC is shared by TYO01 and OSK01 (rule 4): Tokyo gives up all of its IDs of it.
    body = form("1ANACA0A", "1ANACA0B", "1ANAC001", start=START) + "■利用者コードの廃止：1ANAC\r\n"
    out = harness.round_trip(mail(body))
    text = body_text(out[0])
    assert "■他の事業所と共用している利用者コード" in text
    assert "1ANAC：次の事業所からもお申込みが必要です" in text
    assert "- OSK01" in text


# --- whatever the mailer did to the charset ----------------------------------------------------

NAMES = "髙橋 ①郎"  # CP50220 / CP932 only: lost by Python's iso2022_jp and shift_jis codecs
REASON = "㈱髙島屋との統合のため～端末削減"


@pytest.mark.parametrize(
    "encoding",
    [
        "iso-2022-jp",
        "utf-8-labelled-iso-2022-jp",
        "shift_jis",
        "cp932-no-charset",
        "utf-8-base64",
        "utf-8-qp",
        "utf-8-8bit",
    ],
)
def test_every_charset_trap_keeps_what_the_sender_typed(harness: Harness, encoding: str) -> None:
    body = form("1ANACA0A", start=START, applicant=NAMES, reason=REASON)
    out = harness.round_trip(mail(body, sender_name=NAMES, encoding=encoding))
    notice = next(m for m in out if m["To"].addresses[0].addr_spec == YAMADA)
    assert "受付完了" in str(notice["Subject"])
    assert f"{NAMES} 様" in body_text(notice)
    (application,) = harness.applications()
    assert application.applicant_name == NAMES
    assert application.reason == REASON


def test_full_width_and_japanese_era_input(harness: Harness) -> None:
    body = form("１ＡＮＡＣ－Ａ０Ａ", start="令和８年１２月１５日", office_code="ＴＹＯ０１")
    out = harness.round_trip(mail(body))
    assert "受付完了" in str(out[0]["Subject"])
    (application,) = harness.applications()
    assert application.desired_start_date == START


def test_html_only_mail_is_read_as_text_never_rendered(harness: Harness) -> None:
    out = harness.round_trip(html_mail(form("1ANACA0A", start=START)))
    assert "受付完了" in str(out[0]["Subject"])
    (application,) = harness.applications()
    assert application.remarks == ""  # the <script> text did not become a field


def test_a_form_pasted_as_an_html_table_is_read(harness: Harness) -> None:
    out = harness.round_trip(html_table_mail(form("1ANACA0A", "1ANACA0B", start=START)))
    assert "受付完了" in str(out[0]["Subject"]), body_text(out[0])
    (application,) = harness.applications()
    assert application.desired_start_date == START


# --- problems get one reply that names each and how to fix it ----------------------------------


def problem_reply(harness: Harness, raw: bytes, sender: str = YAMADA) -> str:
    out = harness.round_trip(raw, mail_from=sender)
    assert len(out) == 1, [str(m["Subject"]) for m in out]
    (reply,) = out
    assert reply["To"].addresses[0].addr_spec == sender
    assert "受け付けできませんでした" in str(reply["Subject"])
    assert harness.applications() == [] or all(
        a.inbound_id != harness.inbound()[-1].id for a in harness.applications()
    )
    text = body_text(reply)
    assert text.index("申込受付番号は発行していません") < text.index("[English]")
    return text


@pytest.mark.parametrize(
    ("user_id", "start", "expected"),
    [
        ("1ANAC-A0", START, "1ANAC-A0"),  # not 8 characters
        ("9ZZZZ999", START, "9ZZZZ999"),  # rule 1: unknown
        ("1ANACA0C", START, "1ANACA0C"),  # rule 1: Osaka's ID, from Tokyo
        ("1ANACA0A", "2026/02/30", "2026/02/30"),  # impossible date
        ("1ANACA0A", date(2026, 11, 20), "2026年11月20日"),  # rule 5: in the past
        ("1ANACA0A", date(2026, 12, 1), "2026年12月3日"),  # rule 5: too soon; earliest named
    ],
)
def test_each_problem_is_named_with_its_value(
    harness: Harness, user_id: str, start: date | str, expected: str
) -> None:
    text = problem_reply(harness, mail(form(user_id, start=start)))
    assert expected in text


def test_unknown_and_foreign_ids_read_alike(harness: Harness) -> None:
    unknown = problem_reply(harness, mail(form("9ZZZZ999", start=START)))
    foreign = problem_reply(harness, mail(form("1ANACA0C", start=START)))
    assert unknown.replace("9ZZZZ999", "X") == foreign.replace("1ANACA0C", "X")


def test_id_in_open_application_names_its_receipt_number(harness: Harness) -> None:
    harness.round_trip(mail(form("1ANACA0A", start=START)))
    text = problem_reply(harness, mail(form("1ANACA0A", start=START)))
    assert "260001A" in text


def test_already_abolished_id_is_refused(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        user = session.get(UserId, "1ANACA0B")
        assert user is not None
        user.status, user.abolished_on = "abolished", date(2026, 10, 1)
        session.add(user)
    assert "1ANACA0B" in problem_reply(harness, mail(form("1ANACA0B", start=START)))


def test_rule3_code_abolition_lists_the_missing_ids(harness: Harness) -> None:
    body = form("1ANACA0A", start=START) + "■利用者コードの廃止：1ANAC\r\n"
    text = problem_reply(harness, mail(body))
    assert "1ANACA0B" in text and "1ANAC001" in text


def test_every_problem_is_listed_at_once(harness: Harness) -> None:
    body = form("1ANAC-A0", "9ZZZZ999", start="2026/02/30", phone="", reason="") + "■色：赤\r\n"
    text = problem_reply(harness, mail(body))
    for value in ("1ANAC-A0", "2026/02/30", "変更する理由", "申込担当者電話番号", "色"):
        assert value in text, value
    assert "問題があるため" in text
    japanese = text.split("[English]")[0]
    assert japanese.count("色") == 1, "each problem is listed once"


def test_error_reply_carries_a_blank_form(harness: Harness) -> None:
    out = harness.round_trip(mail(form("9ZZZZ999", start=START)))
    (reply,) = out
    assert "■廃止する利用者ID：" in body_text(reply)
    attachments = list(reply.iter_attachments())
    assert attachments and attachments[0].get_filename()


# --- who may apply -----------------------------------------------------------------------------


def refusal_text(harness: Harness, raw: bytes, sender: str) -> str:
    out = harness.round_trip(raw, mail_from=sender)
    (reply,) = out
    assert reply["To"].addresses[0].addr_spec == sender
    return body_text(reply)


def test_outsider_gets_the_same_refusal_whatever_ids(harness: Harness) -> None:
    texts = []
    for body in (form("1ANACA0A", start=START), form("9ZZZZ999", start=START), "hello"):
        texts.append(refusal_text(harness, mail(body, sender=OUTSIDER), OUTSIDER))
        harness.now += timedelta(days=1)  # an outsider gets one reply a day
    existing, bogus, garbage = texts
    assert existing == bogus == garbage
    for secret in ("1ANAC", "TYO01", "東京", "yamada", "260001A"):
        assert secret not in existing
    assert harness.applications() == []


def test_manager_outside_the_contract_is_a_problem_not_an_application(harness: Harness) -> None:
    # A registered contact is told what is wrong (issue 14): the manager's address must be a
    # contact of the office; the reply is a problem reply, not the outsiders' refusal.
    raw = mail(form("1ANACA0A", start=START, manager_email="boss@example.net"))
    text = problem_reply(harness, raw)
    assert "管理責任者メールアドレス『boss@example.net』は、事業所 TYO01 の登録連絡先" in text
    assert harness.applications() == []


# --- robots, duplicates, help ------------------------------------------------------------------


def test_same_message_delivered_twice_is_one_application(harness: Harness) -> None:
    raw = mail(form("1ANACA0A", start=START))
    harness.send(raw)
    harness.send(raw)
    harness.process()
    harness.deliver()
    assert len(harness.inbound()) == 1
    assert len(harness.applications()) == 1
    assert len([m for m in harness.new_mail() if "受付完了" in str(m["Subject"])]) == 2


@pytest.mark.parametrize(
    "header",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"X-Autoreply": "yes"},
        {"X-Auto-Response-Suppress": "All"},
    ],
)
def test_auto_replies_never_get_an_answer(harness: Harness, header: dict[str, str]) -> None:
    raw = mail("ただいま不在にしております。", sender=OUTSIDER, extra_headers=header)
    assert harness.round_trip(raw, mail_from=OUTSIDER) == []
    assert harness.inbound()[0].kind == "auto_reply"


def test_null_return_path_never_gets_an_answer(harness: Harness) -> None:
    assert harness.round_trip(mail("x", sender=OUTSIDER), mail_from="") == []


def test_bounce_of_our_notice_marks_it_bounced_and_gets_no_answer(harness: Harness) -> None:
    harness.round_trip(mail(form("1ANACA0A", start=START)))
    notice = next(o for o in harness.outbound() if o.recipient == SATO)
    dsn = (
        "From: MAILER-DAEMON@example.co.jp\r\nTo: apply+bounce@mailbot.localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; {SATO}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {notice.message_id}\r\nTo: {SATO}\r\n--b--\r\n"
    ).encode()
    out = harness.round_trip(dsn, mail_from="", rcpt_to="apply+bounce@mailbot.localhost")
    assert out == []
    bounced = next(o for o in harness.outbound() if o.id == notice.id)
    assert bounced.status == "bounced"


@pytest.mark.parametrize(("subject", "body"), [("help", "x"), ("ヘルプ", "x"), ("申込", "")])
def test_help_or_empty_body_gets_instructions_and_a_blank_form(
    harness: Harness, subject: str, body: str
) -> None:
    (reply,) = harness.round_trip(mail(body, subject=subject))
    text = body_text(reply)
    assert INTAKE in text and "■廃止する利用者ID：" in text
    assert list(reply.iter_attachments())


def test_error_replies_are_capped_per_address_per_day(harness: Harness) -> None:
    limit = harness.settings.autoreply_per_day
    for _ in range(limit + 3):
        harness.send(mail(form("9ZZZZ999", start=START)))
    harness.process()
    harness.deliver()
    assert len(harness.new_mail()) == limit


# --- quarantine --------------------------------------------------------------------------------


def test_failing_message_is_quarantined_and_the_worker_goes_on(harness: Harness) -> None:
    # A sender address that cannot be written into a reply: processing raises.
    harness.send(mail("x", sender="山田@example.co.jp"), mail_from="x@example.co.jp")
    harness.send(mail(form("1ANACA0A", start=START)))
    harness.process()
    harness.deliver()
    first, second = harness.inbound()
    assert first.status == "quarantined" and first.error
    assert as_sent(bytes(first.raw)).startswith(b"From:")  # raw bytes kept
    assert second.status == "done" and second.kind == "accepted"
    assert harness.applications()[0].receipt_no == "260001A"


def test_quarantined_message_can_be_reprocessed_after_the_cause_is_fixed(harness: Harness) -> None:
    from mailbot.worker import requeue

    with harness.engine.begin() as conn:
        conn.execute(text("ALTER TABLE registration_date RENAME TO registration_date_moved"))
    harness.send(mail(form("1ANACA0A", start=START)))
    harness.process()
    (message,) = harness.inbound()
    assert message.status == "quarantined"
    assert "registration_date" in (message.error or "")
    with harness.engine.begin() as conn:
        conn.execute(text("ALTER TABLE registration_date_moved RENAME TO registration_date"))
    with session_scope(harness.engine) as session:
        requeue(session, message.id or 0)
    harness.process()
    harness.deliver()
    assert harness.inbound()[0].status == "done"
    assert [a.receipt_no for a in harness.applications()] == ["260001A"]
    assert len(harness.new_mail()) == 3


def test_both_offices_sharing_a_code_can_apply_at_once(harness: Harness) -> None:
    # Rule 4: Tokyo gives up its 1ANAC IDs; Osaka, still under review for nothing, then applies
    # for its own 1ANAC ID while Tokyo's application is open. Both are accepted.
    tokyo = form("1ANACA0A", "1ANACA0B", "1ANAC001", start=START) + "■利用者コードの廃止：1ANAC\r\n"
    harness.round_trip(mail(tokyo))
    osaka = form("1ANACA0C", start=START, office_code="OSK01", manager_email="ito@example.co.jp")
    out = harness.round_trip(mail(osaka + "■利用者コードの廃止：1ANAC\r\n", sender=KATO))
    assert [a.status for a in harness.applications()] == ["under_review", "under_review"]
    notice = next(m for m in out if "受付完了" in str(m["Subject"]))
    assert "1ANAC：共用する全ての事業所からのお申込みがそろいました。" in body_text(notice)
