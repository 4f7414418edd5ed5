"""契約内容確認 by mail, over real SMTP: the contract reply, its pre-filled forms mailed back
marked, and the neutral refusal for anyone who is not a registered contact.

Demo registry: TYO01 (yamada@, sato@) holds 1ANACA0A, 1ANACA0B, 1ANAC001; OSK01 (kato@, ito@)
holds 1ANACA0C, 2BXYZ001, 2BXYZ002; 1ANAC is shared. The harness clock is Friday 2026-11-27.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from openpyxl import load_workbook

from db.engine import session_scope
from db.models import UserId
from mailbot.parsers.body import parse_body
from mailbot.registry import import_registry
from tests.support.attachments import CSV, XLSX, attachment_mail
from tests.support.harness import Harness, body_text
from tests.support.requests import KATO, OUTSIDER, SATO, YAMADA, form, mail

SUBJECT = "【NSS】契約内容のお知らせ"
START = date(2026, 12, 15)


def contract_reply(
    harness: Harness, sender: str = YAMADA, subject: str = "契約内容確認"
) -> EmailMessage:
    raw = mail("", sender=sender, subject=subject)
    out = harness.round_trip(raw, mail_from=sender)
    assert len(out) == 1, [str(m["Subject"]) for m in out]
    (reply,) = out
    assert reply["To"].addresses[0].addr_spec == sender
    return reply


def japanese(message: EmailMessage) -> str:
    return body_text(message).split("[English]")[0]


def attachment(message: EmailMessage, name: str) -> bytes:
    for part in message.iter_attachments():
        if part.get_filename() == name:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload
    raise AssertionError(
        f"{name} not attached: {[p.get_filename() for p in message.iter_attachments()]}"
    )


def test_a_contact_gets_the_contract_of_their_office(harness: Harness) -> None:
    reply = contract_reply(harness)
    assert str(reply["Subject"]) == SUBJECT
    text = japanese(reply)
    assert text.startswith("山田 太郎 様\n")
    for expected in (
        "  会社名　　　　○○株式会社",
        "  事業所　　　　東京事業所（事業所コード TYO01）",
        "  部署　　　　　通関部",
        "  登録連絡先　　sato@example.co.jp、yamada@example.co.jp",
        "  ［netNACCS］\n  利用者コード 1ANAC\n    1ANACA0A　利用中\n    1ANACA0B　利用中\n",
        "  ［一般NACCS］\n  利用者コード 1ANAC\n    1ANAC001　利用中\n",
        "  利用者コード 1ANAC　この事業所 未申込／OSK01 未申込",
        "記入済み申込書　廃止申込書_TYO01.xlsx、廃止申込書_TYO01.csv",
        "  2026年12月8日（火）　← 本日お申込みの場合の最短の利用開始日",
    ):
        assert expected in text, expected
    # Only Tokyo's IDs: Osaka's own ones are not named, nor its name.
    for other in ("1ANACA0C", "2BXYZ", "大阪", "kato@"):
        assert other not in body_text(reply)
    names = [part.get_filename() for part in reply.iter_attachments()]
    assert names == ["廃止申込書_TYO01.xlsx", "廃止申込書_TYO01.csv"]
    assert harness.inbound()[-1].kind == "contract"


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("契約内容", "よろしくお願いします"),
        ("contract", ""),
        ("Re: 【契約内容確認】", ""),
        ("ご依頼", "契約内容確認\n\n山田"),
    ],
)
def test_the_ways_to_ask(harness: Harness, subject: str, body: str) -> None:
    raw = mail(body, subject=subject)
    (reply,) = harness.round_trip(raw)
    assert str(reply["Subject"]) == SUBJECT


def test_states_open_application_and_abolished_id(harness: Harness) -> None:
    harness.round_trip(mail(form("1ANACA0A", start=START)))  # 260001A, under review
    with session_scope(harness.engine) as session:
        user = session.get(UserId, "1ANAC001")
        assert user is not None
        user.status, user.abolished_on = "abolished", date(2026, 10, 1)
        session.add(user)
    text = japanese(contract_reply(harness))
    assert (
        "    1ANACA0A　廃止申込中（申込受付番号 260001A・内容確認中・利用開始日（予定） 2026年12月15日（火））"
        in text
    )
    assert "    1ANACA0B　利用中" in text
    assert "    1ANAC001　廃止済（2026年10月1日（木））" in text
    assert "利用中 1件・廃止申込中 1件・廃止済 1件" in text


def test_shared_code_says_which_sharing_office_has_applied(harness: Harness) -> None:
    osaka = form("1ANACA0C", start=START, office_code="OSK01", manager_email="ito@example.co.jp")
    harness.round_trip(mail(osaka, sender=KATO, sender_name="加藤 一郎"), mail_from=KATO)
    text = japanese(contract_reply(harness))
    assert "  利用者コード 1ANAC　この事業所 未申込／OSK01 申込済" in text
    assert "260002A" not in text and "260001A" not in text  # Osaka's receipt is its own


def test_a_contact_of_two_offices_gets_both(harness: Harness, tmp_path: Path) -> None:
    both = tmp_path / "both.csv"
    both.write_text(
        "office_code,company,office,department,contact_emails,user_id\n"
        "OSK01,○○株式会社,大阪事業所,業務部,kato@example.co.jp;ito@example.co.jp;yamada@example.co.jp,1ANACA0C\n",
        encoding="utf-8",
    )
    with session_scope(harness.engine) as session:
        import_registry(session, both)
    reply = contract_reply(harness)
    text = japanese(reply)
    assert "事業所は2か所です" in text
    assert "━━━━ 事業所 1/2　OSK01 ━━━━" in text and "━━━━ 事業所 2/2　TYO01 ━━━━" in text
    for user_id in ("1ANACA0A", "1ANACA0B", "1ANAC001", "1ANACA0C", "2BXYZ001", "2BXYZ002"):
        assert f"    {user_id}　利用中" in text
    names = [part.get_filename() for part in reply.iter_attachments()]
    assert names == [
        "廃止申込書_OSK01.xlsx",
        "廃止申込書_OSK01.csv",
        "廃止申込書_TYO01.xlsx",
        "廃止申込書_TYO01.csv",
    ]


def test_an_outsider_gets_the_refusal_a_request_gets_byte_for_byte(harness: Harness) -> None:
    other = "eve@example.org"
    asked = harness.round_trip(
        mail("", sender=OUTSIDER, subject="契約内容確認"), mail_from=OUTSIDER
    )
    requested = harness.round_trip(
        mail(form("1ANACA0A", start=START), sender=other), mail_from=other
    )
    (contract,), (request,) = asked, requested
    assert str(contract["Subject"]) == str(request["Subject"])
    part_a = contract.get_body(preferencelist=("plain",))
    part_b = request.get_body(preferencelist=("plain",))
    assert part_a is not None and part_b is not None
    assert part_a.get_payload(decode=True) == part_b.get_payload(decode=True)
    assert list(contract.iter_attachments()) == []
    assert harness.inbound()[0].kind == "refused"
    # Again the next day (an outsider gets one reply a day): still the same bytes.
    harness.now += timedelta(days=1)
    (again,) = harness.round_trip(mail("", sender=OUTSIDER, subject="契約内容"), mail_from=OUTSIDER)
    part_c = again.get_body(preferencelist=("plain",))
    assert part_c is not None and part_c.get_payload(decode=True) == part_a.get_payload(decode=True)


def test_the_reply_text_reads_as_no_form(harness: Harness) -> None:
    # Sent back as a reply without quoting (as many mailers do), the contract's text must not
    # read as form fields or unknown labels beside the attached form.
    form_read = parse_body(body_text(contract_reply(harness)))
    assert form_read.fields == {} and form_read.problems == []


# --- the pre-filled form, marked and mailed back ------------------------------------------------

FILL = {
    "変更する理由": "事業所の統合のため",
    "申込担当者電話番号": "03-1234-5678",
    "管理責任者": "佐藤 花子",
    "管理責任者メールアドレス": SATO,
    "利用開始希望日": "2026/12/15",
}


def mark_xlsx(data: bytes, marks: dict[str, str]) -> bytes:
    workbook = load_workbook(io.BytesIO(data))
    sheet = workbook.active
    assert sheet is not None
    for row in sheet.iter_rows():
        if row[0].value in FILL:
            row[1].value = FILL[str(row[0].value)]
        if row[1].value in marks:
            row[0].value = marks[str(row[1].value)]
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def mark_csv(data: bytes, marks: dict[str, str]) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    for row in rows:
        if row and row[0] in FILL:
            row[1] = FILL[row[0]]
        if len(row) > 1 and row[0] == "" and row[1] in marks:
            row[0] = marks[row[1]]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def send_back(harness: Harness, reply: EmailMessage, name: str, data: bytes) -> list[EmailMessage]:
    """The marked form attached to a reply that carries the contract mail below it, unquoted,
    as Outlook writes a reply."""
    cover = "添付のとおり申し込みます。\r\n\r\n-----Original Message-----\r\n" + body_text(
        reply
    ).replace("\n", "\r\n")
    content_type = CSV if name.endswith(".csv") else XLSX
    return harness.round_trip(attachment_mail([(name, content_type, data)], cover_letter=cover))


@pytest.mark.parametrize(
    ("kind", "mark"), [("xlsx", "○"), ("csv", "✓"), ("csv", "1"), ("xlsx", "x")]
)
def test_marked_form_sent_back_is_a_request_for_exactly_the_marked_ids(
    harness: Harness, kind: str, mark: str
) -> None:
    reply = contract_reply(harness)
    name = f"廃止申込書_TYO01.{kind}"
    marked = (mark_xlsx if kind == "xlsx" else mark_csv)(
        attachment(reply, name), {"1ANACA0A": mark, "1ANAC001": mark}
    )
    out = send_back(harness, reply, name, marked)
    notices = [m for m in out if "利用申込受付完了のお知らせ" in str(m["Subject"])]
    assert sorted(m["To"].addresses[0].addr_spec for m in notices) == [SATO, YAMADA], [
        body_text(m) for m in out
    ]
    (application,) = harness.applications()
    assert (application.office_code, application.applicant_email) == ("TYO01", YAMADA)
    assert application.applicant_name == "山田 太郎"
    text = body_text(notices[0])
    assert "  1ANAC001（一般NACCS）\n  1ANACA0A（netNACCS）\n" in text, text
    assert "1ANACA0B" not in text


def test_a_marked_id_no_longer_active_is_named(harness: Harness) -> None:
    reply = contract_reply(harness)
    # After the form was made, 1ANACA0B was applied for by another request and 1ANAC001 was
    # abolished.
    harness.round_trip(mail(form("1ANACA0B", start=START)))
    with session_scope(harness.engine) as session:
        user = session.get(UserId, "1ANAC001")
        assert user is not None
        user.status, user.abolished_on = "abolished", date(2026, 11, 27)
        session.add(user)
    harness.now += timedelta(minutes=5)
    marks = {"1ANACA0A": "○", "1ANACA0B": "○", "1ANAC001": "○"}
    marked = mark_xlsx(attachment(reply, "廃止申込書_TYO01.xlsx"), marks)
    (problem_reply,) = send_back(harness, reply, "廃止申込書_TYO01.xlsx", marked)
    text = body_text(problem_reply).split("[English]")[0]
    assert "受け付けできませんでした" in str(problem_reply["Subject"])
    assert "次の2件の問題" in text
    assert "利用者ID『1ANACA0B』は申込受付番号 260001A で既に申込中です" in text
    assert "利用者ID『1ANAC001』は既に廃止されています（2026年11月27日（金）廃止）" in text
    assert [a.receipt_no for a in harness.applications()] == ["260001A"]
