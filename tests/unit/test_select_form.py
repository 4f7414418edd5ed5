"""Which form counts: attachment or body, two forms, conflicts, limits, refused formats."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from openpyxl import Workbook

from mailbot.blank_form import write_blank_form
from mailbot.mime import Attachment, ParsedMail, parse_mail
from mailbot.parsers.form import RawForm
from mailbot.parsers.select import read_request

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # docs/japanese-mail.md#the-sample-mails
LIMITS = {"max_attachments": 5, "max_attachment_bytes": 1024 * 1024}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

COVER_LETTER = """お世話になっております。
利用者IDの廃止申込書を添付いたします。
よろしくお願いいたします。

--
株式会社ABC 物流部 山田 太郎
TEL: 03-9999-9999
"""

VERTICAL_CSV = (
    "事業所コード,TYO01\r\n"
    "廃止する利用者ID,1ANACA0A\r\n"
    ",1ANACA0B\r\n"
    "利用開始希望日,2026/12/22\r\n"
    "変更する理由,移管のため\r\n"
    "申込担当者,山田 太郎\r\n"
    "申込担当者電話番号,03-1234-5678\r\n"
    "管理責任者,佐藤 花子\r\n"
    "管理責任者メールアドレス,sato@example.co.jp\r\n"
).encode("cp932")


def mail(text: str = "", *attachments: Attachment) -> ParsedMail:
    return ParsedMail(
        message_id="<x@example.co.jp>",
        subject="利用者ID廃止申込",
        from_address="yamada@example.co.jp",
        from_name="山田",
        to_addresses=("apply@mailbot.localhost",),
        cc_addresses=(),
        reply_to=(),
        in_reply_to=None,
        references=(),
        date=None,
        content_type="multipart/mixed",
        text=text,
        text_from_html=False,
        attachments=attachments,
        defects=(),
    )


def attach(
    filename: str | None, data: bytes, content_type: str = "application/octet-stream"
) -> Attachment:
    return Attachment(filename, content_type, data, len(data))


def read(message: ParsedMail, **limits: int) -> RawForm:
    return read_request(message, **{**LIMITS, **limits})


def values(form: RawForm) -> dict[str, str]:
    return {name: raw.value for name, raw in form.fields.items()}


def codes(form: RawForm) -> list[str]:
    return [problem.code for problem in form.problems]


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- attachment or body ---------------------------------------------------------------------------


def test_no_attachment_reads_the_body() -> None:
    form = read(mail("事業所コード：TYO01\n廃止する利用者ID：1ANACA0A\n"))
    assert form.source == "本文"
    assert values(form) == {"office_code": "TYO01", "user_ids": "1ANACA0A"}


def test_attached_form_is_the_request_and_the_cover_letter_is_ignored() -> None:
    form = read(mail(COVER_LETTER, attach("申込書.csv", VERTICAL_CSV)))
    assert form.source == "申込書.csv"
    assert form.problems == []
    assert values(form)["applicant_phone"] == "03-1234-5678"  # not the signature's TEL
    assert form.fields["user_ids"].location == "申込書.csv B2"


def test_body_repeating_the_attached_values_is_fine() -> None:
    body = "廃止する利用者ID：１ＡＮＡＣ－Ａ０Ｂ、1anaca0a\n申込担当者：山田　太郎\n"
    form = read(mail(body, attach("申込書.csv", VERTICAL_CSV)))
    assert form.problems == []
    assert values(form)["user_ids"] == "1ANACA0A\n1ANACA0B"


def test_body_contradicting_the_attachment_names_both_places() -> None:
    body = "廃止する利用者ID：1ANACA0A\n利用開始希望日：2026/12/15\n"
    form = read(mail(body, attach("申込書.csv", VERTICAL_CSV)))
    assert codes(form) == ["form.body_conflict", "form.body_conflict"]
    message = form.problems[1].message_ja
    assert "申込書.csv B4" in message and "本文 2行目" in message
    assert "2026/12/22" in message and "2026/12/15" in message
    assert values(form)["desired_start_date"] == "2026/12/22"  # the attachment's stands


def test_body_adds_a_field_the_attachment_lacks() -> None:
    body = "備考：年内にお願いします\n廃止する利用者ID：1ANACA0A 1ANACA0B\n"
    form = read(mail(body, attach("申込書.csv", VERTICAL_CSV)))
    assert form.problems == []
    assert form.fields["remarks"].value == "年内にお願いします"
    assert form.fields["remarks"].location == "本文 1行目"


def test_two_attached_forms_name_both_files() -> None:
    second = json.dumps({"user_ids": ["1ANACA0C"]}).encode()
    form = read(mail("", attach("申込書1.csv", VERTICAL_CSV), attach("申込書2.json", second)))
    assert codes(form) == ["attachment.two_forms"]
    assert "申込書1.csv" in form.problems[0].message_ja
    assert "申込書2.json" in form.problems[0].message_ja
    assert values(form)["office_code"] == "TYO01"  # the first form's fields, no "missing" noise


# --- recognising attachments ----------------------------------------------------------------------


def test_non_form_attachments_are_ignored() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024)  # also over the size limit
    form = read(
        mail(
            "廃止する利用者ID：1ANACA0A\n",
            attach("image001.png", png, "image/png"),
            attach("承認.pdf", b"%PDF-1.7", "application/pdf"),
            attach(None, b"\x00\x01", "application/octet-stream"),
        )
    )
    assert form.source == "本文"
    assert form.problems == []


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/csv", VERTICAL_CSV),
        ("application/vnd.ms-excel", VERTICAL_CSV),  # how Windows labels .csv
        (XLSX_TYPE, xlsx_bytes([["廃止する利用者ID", "1ANACA0A"], ["事業所コード", "TYO01"]])),
        ("application/json", b'{"user_ids": ["1ANACA0A"], "office_code": "TYO01"}'),
    ],
)
def test_content_type_decides_when_the_name_is_missing(content_type: str, data: bytes) -> None:
    form = read(mail(COVER_LETTER, attach(None, data, content_type)))
    assert form.source == "添付ファイル1"
    assert values(form)["office_code"] == "TYO01"


def test_full_width_and_upper_case_extension() -> None:
    form = read(mail("", attach("申込書．ＣＳＶ", VERTICAL_CSV)))
    assert values(form)["office_code"] == "TYO01"


def test_a_csv_that_is_really_a_workbook_is_read_as_one() -> None:
    data = xlsx_bytes([["廃止する利用者ID", "1ANACA0A"], ["事業所コード", "TYO01"]])
    assert values(read(mail("", attach("申込書.csv", data))))["office_code"] == "TYO01"


@pytest.mark.parametrize("filename", ["申込書.xls", "申込書.xlsm"])
def test_xls_and_xlsm_are_refused(filename: str) -> None:
    data = xlsx_bytes([["廃止する利用者ID", "1ANACA0A"]])
    form = read(mail(COVER_LETTER, attach(filename, data)))
    assert codes(form) == ["file.format_refused"]
    assert form.fields == {}
    assert "名前を付けて保存" in form.problems[0].message_ja


def test_old_xls_content_without_a_name_is_refused() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024)
    form = read(mail("", attach(None, ole, "application/vnd.ms-excel")))
    assert codes(form) == ["file.format_refused"]


def test_unicode_text_txt_counts_as_a_form() -> None:
    text = "廃止する利用者ID\t1ANACA0A\r\n事業所コード\tTYO01\r\n"
    form = read(mail(COVER_LETTER, attach("申込書.txt", text.encode("utf-16"))))
    assert values(form) == {"user_ids": "1ANACA0A", "office_code": "TYO01"}


def test_filled_text_blank_form_as_txt_counts_as_a_form() -> None:
    text = "■事業所コード：TYO01\n■廃止する利用者ID：1ANACA0A\n"
    form = read(mail(COVER_LETTER, attach("廃止申込書.txt", text.encode("cp932"))))
    assert form.source == "廃止申込書.txt"
    assert form.fields["office_code"].location == "廃止申込書.txt 1行目"


def test_a_txt_that_is_no_form_is_ignored() -> None:
    form = read(mail("廃止する利用者ID：1ANACA0A\n", attach("memo.txt", "メモです".encode())))
    assert form.source == "本文"
    assert form.problems == []


# --- unreadable and label-less attachments ---------------------------------------------------------


def test_garbage_csv_is_reported_even_beside_a_body_form() -> None:
    body = "廃止する利用者ID：1ANACA0A\n"
    form = read(mail(body, attach("申込書.csv", bytes(range(256)) * 16)))
    assert codes(form) == ["file.not_text"]
    assert values(form) == {"user_ids": "1ANACA0A"}


def test_garbage_csv_alone_is_one_problem_without_fields() -> None:
    form = read(mail(COVER_LETTER, attach("申込書.csv", bytes(range(256)) * 16)))
    assert codes(form) == ["file.not_text"]
    assert form.fields == {}
    assert form.source == "申込書.csv"


def test_unlabelled_csv_is_reported_only_when_there_is_no_form() -> None:
    ids = attach("ids.csv", b"1ANACA0A\r\n1ANACA0B\r\n")
    assert codes(read(mail(COVER_LETTER, ids))) == ["file.no_form"]
    with_body = read(mail("廃止する利用者ID：1ANACA0A\n", ids))
    assert with_body.source == "本文" and with_body.problems == []


def test_a_form_beside_an_unreadable_attachment() -> None:
    form = read(
        mail("", attach("申込書.csv", VERTICAL_CSV), attach("old.xls", b"\xd0\xcf\x11\xe0" * 4))
    )
    assert codes(form) == ["file.format_refused"]
    assert values(form)["office_code"] == "TYO01"


# --- limits ---------------------------------------------------------------------------------------


def test_too_many_form_attachments() -> None:
    files = [attach(f"申込書{n}.csv", VERTICAL_CSV) for n in range(3)]
    form = read(mail("", *files), max_attachments=2)
    assert codes(form) == ["attachment.too_many"]
    assert "上限2個" in form.problems[0].message_ja
    assert "申込書0.csv" in form.problems[0].message_ja


def test_signature_images_do_not_count_towards_the_limit() -> None:
    images = [attach(f"image00{n}.png", b"\x89PNG", "image/png") for n in range(8)]
    form = read(mail("", attach("申込書.csv", VERTICAL_CSV), *images), max_attachments=2)
    assert form.problems == []


def test_truncated_attachment_names_the_file_and_the_limit() -> None:
    big = Attachment("申込書.xlsx", XLSX_TYPE, b"", 6 * 1024 * 1024, truncated=True)
    form = read(mail(COVER_LETTER, big), max_attachment_bytes=5 * 1024 * 1024)
    assert codes(form) == ["attachment.too_large"]
    message = form.problems[0].message_ja
    assert "申込書.xlsx" in message and "6 MB" in message and "上限5 MB" in message


def test_size_over_the_limit_is_refused_before_parsing() -> None:
    form = read(mail("", attach("申込書.csv", VERTICAL_CSV)), max_attachment_bytes=100)
    assert codes(form) == ["attachment.too_large"]


# --- real mail: file names as mailers write them --------------------------------------------------


def _raw_mail(disposition: str, data: bytes, content_type: str = "text/csv") -> bytes:
    encoded = base64.encodebytes(data).decode()
    return (
        "From: yamada@example.co.jp\r\nTo: apply@mailbot.localhost\r\nSubject: test\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nよろしくお願いします。\r\n"
        f"--XX\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n{encoded}\r\n--XX--\r\n"
    ).encode()


@pytest.mark.parametrize(
    "disposition",
    [
        # Outlook: an RFC 2047 encoded-word inside quotes.
        'attachment; filename="=?ISO-2022-JP?B?GyRCR1E7Xz89OX49cRsoQi5jc3Y=?="',
        # Thunderbird: RFC 2231 continuations.
        "attachment; filename*0*=utf-8''%E5%BB%83%E6%AD%A2; filename*1*=%E7%94%B3%E8%BE%BC%E6%9B%B8.csv",
        # RFC 2231 continuations in ISO-2022-JP (policy.default may raise on these).
        "attachment;\r\n filename*0*=iso-2022-jp''%1B%24BGQ%3B_%3F%3D9~%3D;\r\n filename*1*=q%1B%28B.csv",
    ],
    ids=["outlook-rfc2047", "thunderbird-rfc2231", "rfc2231-iso2022jp"],
)
def test_mailer_file_names(disposition: str) -> None:
    parsed = parse_mail(_raw_mail(disposition, VERTICAL_CSV, "application/octet-stream"))
    form = read(parsed)
    assert form.source == "廃止申込書.csv"
    assert values(form)["office_code"] == "TYO01"
    assert form.fields["office_code"].location == "廃止申込書.csv B1"


def test_the_shared_cp932_sample_mail() -> None:
    parsed = parse_mail((SAMPLES / "request-csv-cp932.eml").read_bytes())
    form = read(parsed)
    assert form.source == "廃止申込書.csv"
    assert form.problems == []
    assert values(form)["manager_email"] == "sato@example.co.jp"


def test_the_blank_xlsx_we_hand_out_is_read_back() -> None:
    filename, content_type, data = write_blank_form("xlsx")
    form = read(mail(COVER_LETTER, attach(filename, data, content_type)))
    assert form.source == filename
    assert form.problems == []
    assert all(raw.value == "" for raw in form.fields.values())
