"""Requests attached as CSV, XLSX or JSON, through the real SMTP gateway to the relay."""

from __future__ import annotations

import io
import os
import zipfile

import openpyxl
import pytest

from mailbot.blank_form import write_blank_form
from tests.integration.conftest import HarnessFactory
from tests.support.attachments import (
    CSV,
    XLSX,
    attachment_mail,
    csv_bytes,
    filled_blank_xlsx,
    json_bytes,
    table_csv,
    vertical_rows,
)
from tests.support.harness import Harness, body_text
from tests.support.requests import YAMADA, form, mail

VARIANTS = {
    "vertical CSV (CP932, Japanese Excel)": ("廃止申込書.csv", CSV, csv_bytes(vertical_rows())),
    "vertical CSV (UTF-8 with BOM)": (
        "申込書.csv",
        CSV,
        csv_bytes(vertical_rows(), "utf-8-sig"),
    ),
    "table CSV (one row per ID)": ("申込一覧.csv", CSV, table_csv()),
    "Unicode text (UTF-16, tabs)": (
        "申込書.txt",
        "text/plain",
        csv_bytes(vertical_rows(), "utf-16", delimiter="\t"),
    ),
    "XLSX (the blank form, filled in)": ("廃止申込書.xlsx", XLSX, filled_blank_xlsx()),
    "JSON": ("request.json", "application/json", json_bytes()),
}


def receipt_notices(out: list) -> list:  # type: ignore[type-arg]
    return [m for m in out if "利用申込受付完了のお知らせ" in str(m["Subject"])]


@pytest.mark.parametrize("style", ["outlook", "thunderbird"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_form_format_gets_a_receipt_notice(harness: Harness, variant: str, style: str) -> None:
    out = harness.round_trip(attachment_mail([VARIANTS[variant]], style=style))
    notices = receipt_notices(out)
    assert len(notices) == 2, [str(m["Subject"]) for m in out]
    (application,) = harness.applications()
    assert application.reason == "㈱髙島屋への事業譲渡のため"
    assert "1ANACA0B（netNACCS）" in body_text(notices[0])


def test_a_wrong_value_is_reported_with_the_file_and_cell(harness: Harness) -> None:
    rows = vertical_rows(ids=("1ANACA0A", "1ANAC-A0"))
    (reply,) = harness.round_trip(attachment_mail([("申込書.csv", CSV, csv_bytes(rows))]))
    text = body_text(reply)
    assert "1ANAC-A0" in text and "申込書.csv B4" in text
    assert harness.applications() == []


def test_a_wrong_value_in_xlsx_names_the_cell(harness: Harness) -> None:
    data = filled_blank_xlsx(**{"申込担当者電話番号": "電話なし"})
    (reply,) = harness.round_trip(attachment_mail([("申込書.xlsx", XLSX, data)]))
    text = body_text(reply)
    assert "電話なし" in text and "申込書.xlsx" in text and "!B23" in text


def test_two_forms_are_a_problem_naming_both(harness: Harness) -> None:
    files = [VARIANTS["JSON"], VARIANTS["vertical CSV (CP932, Japanese Excel)"]]
    (reply,) = harness.round_trip(attachment_mail(files))
    text = body_text(reply)
    assert "request.json" in text and "廃止申込書.csv" in text


def test_body_contradicting_the_attachment_names_both(harness: Harness) -> None:
    raw = attachment_mail(
        [VARIANTS["vertical CSV (CP932, Japanese Excel)"]],
        cover_letter="■利用開始希望日：2026/12/22\r\n",
    )
    (reply,) = harness.round_trip(raw)
    text = body_text(reply)
    assert "2026/12/22" in text and "2026/12/15" in text


def test_old_excel_formats_are_asked_for_again(harness: Harness) -> None:
    ole2 = bytes.fromhex("D0CF11E0A1B11AE1") + bytes(4096)
    (reply,) = harness.round_trip(
        attachment_mail([("申込書.xls", "application/vnd.ms-excel", ole2)])
    )
    assert ".xlsx" in body_text(reply) and "申込書.xls" in body_text(reply)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member,
    ):
        chunk = b"\0" * (1 << 20)
        for _ in range(200):  # 200 MB of zeros, about 200 KB compressed
            member.write(chunk)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "hostile",
    [
        ("申込書.xlsx", XLSX, zip_bomb()),
        ("申込書.csv", CSV, os.urandom(64 * 1024)),
        ("大量.csv", CSV, b"a,b\r\n" * 100_000),
    ],
    ids=["zip bomb", "binary garbage", "100,000 rows"],
)
def test_hostile_files_get_a_clear_reply_and_the_worker_goes_on(
    harness_factory: HarnessFactory, hostile: tuple[str, str, bytes]
) -> None:
    h = harness_factory(max_message_bytes=8 * 1024 * 1024)
    (reply,) = h.round_trip(attachment_mail([hostile]))
    assert hostile[0] in body_text(reply)
    assert "受け付けできませんでした" in str(reply["Subject"])
    # The next request is processed as usual.
    out = h.round_trip(mail(form("1ANACA0A", start="2026/12/15")))
    assert receipt_notices(out)
    assert all(m.status == "done" for m in h.inbound())


def test_an_attachment_over_the_limit_is_refused_with_the_limit(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory(max_attachment_bytes=4096)
    big = csv_bytes(vertical_rows()) + b"\r\n" * 8000
    (reply,) = h.round_trip(attachment_mail([("申込書.csv", CSV, big)]))
    text = body_text(reply)
    assert "申込書.csv" in text and "4" in text


def test_help_and_error_replies_attach_the_blank_xlsx(harness: Harness) -> None:
    (reply,) = harness.round_trip(mail("", subject="help"))
    (attached,) = list(reply.iter_attachments())
    assert attached.get_filename() == "廃止申込書.xlsx"
    workbook = openpyxl.load_workbook(io.BytesIO(attached.get_content()), read_only=True)
    assert workbook.sheetnames == ["申込書"]
    assert attached.get_content_type() == write_blank_form("xlsx")[1]
    assert str(reply["To"].addresses[0].addr_spec) == YAMADA
