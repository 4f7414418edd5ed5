"""The pre-filled form of the contract reply: XLSX and CSV, marked in the 「廃止」 column and
read back by the real parsers as the request for exactly the marked IDs."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from openpyxl import load_workbook

from mailbot.blank_form import (
    MARK_TABLE_HEADINGS,
    Prefill,
    prefilled_form_csv,
    prefilled_form_xlsx,
    prefilled_rows,
)
from mailbot.draft import read_draft
from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.form import RawForm
from mailbot.parsers.grid import mark_of
from mailbot.parsers.xlsx_form import parse_xlsx

SENDER = "yamada@example.co.jp"
PREFILL = Prefill(
    office_code="TYO01",
    office_line="○○株式会社 東京事業所 通関部",
    applicant_name="山田 太郎",
    applicant_email=SENDER,
    desired_start_date=date(2026, 12, 8),
    user_ids=("1ANACA0A", "1ANACA0B", "1ANAC001"),
    contacts=(SENDER, "sato@example.co.jp"),
)
FILLED = {
    "変更する理由": "事業所の統合のため",
    "申込担当者電話番号": "03-1234-5678",
    "管理責任者": "佐藤 花子",
    "管理責任者メールアドレス": "sato@example.co.jp",
}


def filled_csv(marks: dict[str, str], values: dict[str, str] = FILLED) -> bytes:
    """The CSV as a person fills it in a spreadsheet: values in column B, marks in column A."""
    rows = list(csv.reader(io.StringIO(prefilled_form_csv(PREFILL).decode("utf-8-sig"))))
    for row in rows:
        if row and row[0] in values:
            row[1] = values[row[0]]
        if len(row) > 1 and row[1] in marks and row[0] == "":
            row[0] = marks[row[1]]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def filled_xlsx(marks: dict[str, str | int | bool], values: dict[str, str] = FILLED) -> bytes:
    workbook = load_workbook(io.BytesIO(prefilled_form_xlsx(PREFILL)))
    sheet = workbook.active
    assert sheet is not None
    for row in sheet.iter_rows():
        label, value = row[0], row[1]
        if label.value in values:
            value.value = values[str(label.value)]
        if value.value in marks:
            label.value = marks[str(value.value)]
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def parsed(kind: str, marks: dict[str, str], values: dict[str, str] = FILLED) -> RawForm:
    if kind == "csv":
        return parse_csv(filled_csv(marks, values), "廃止申込書_TYO01.csv")
    return parse_xlsx(filled_xlsx(dict(marks), values), "廃止申込書_TYO01.xlsx")


def test_the_form_lists_every_id_with_an_empty_mark_column() -> None:
    rows = prefilled_rows(PREFILL)
    table = rows.index(list(MARK_TABLE_HEADINGS))
    assert rows[table + 1 :] == [
        ["", "1ANACA0A", "1ANAC", "A0A", "netNACCS"],
        ["", "1ANACA0B", "1ANAC", "A0B", "netNACCS"],
        ["", "1ANAC001", "1ANAC", "001", "一般NACCS"],
    ]
    values = {row[0]: row[1] for row in rows if len(row) == 3}
    assert values["事業所コード"] == "TYO01"
    assert values["申込担当者メールアドレス"] == SENDER
    assert values["申込担当者"] == "山田 太郎"
    assert values["利用開始希望日"] == "2026/12/08"


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
@pytest.mark.parametrize("mark", ["○", "✓", "1", "x", "X", "ｘ", "レ", "◯", "〇"])
def test_marked_rows_are_the_request(kind: str, mark: str) -> None:
    form = parsed(kind, {"1ANACA0A": mark, "1ANAC001": mark})
    draft = read_draft(form, SENDER)
    assert draft.problems == ()
    assert draft.user_ids == ("1ANACA0A", "1ANAC001")
    complete = draft.complete()
    assert complete is not None
    assert (complete.office_code, complete.applicant_email, complete.applicant_name) == (
        "TYO01",
        SENDER,
        "山田 太郎",
    )
    assert complete.desired_start_date == date(2026, 12, 8)


def test_a_number_typed_as_a_number_in_excel_is_a_mark() -> None:
    form = parse_xlsx(filled_xlsx({"1ANACA0B": 1, "1ANAC001": True}), "a.xlsx")
    assert read_draft(form, SENDER).user_ids == ("1ANACA0B", "1ANAC001")


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_nothing_marked_is_one_problem(kind: str) -> None:
    draft = read_draft(parsed(kind, {"1ANACA0A": "-"}), SENDER)
    assert [p.code for p in draft.problems] == ["user_ids.nothing_marked"]
    assert "「廃止」欄に印のある利用者IDがありません" in draft.problems[0].message_ja


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_an_unclear_mark_is_named_with_its_cell(kind: str) -> None:
    draft = read_draft(parsed(kind, {"1ANACA0A": "○", "1ANACA0B": "×"}), SENDER)
    (problem,) = draft.problems
    assert problem.code == "form.unclear_mark" and problem.value == "×"
    assert problem.location is not None
    assert problem.location.endswith((" A19", "!A19"))  # 1ANACA0B's row, column A
    assert draft.user_ids == ("1ANACA0A",)  # the clear one is still read (and checked)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("○", True),
        (" ✔ ", True),
        ("TRUE", True),
        ("廃止", True),
        ("", False),
        ("-", False),
        ("0", False),
        ("いいえ", None),
        ("×", None),
        ("△", None),
    ],
)
def test_marks(text: str, expected: bool | None) -> None:
    assert mark_of(text) is expected


def test_info_columns_are_read_only_in_a_mark_table() -> None:
    # In an ordinary table 利用者コード is an ambiguous label and is reported, as before.
    data = "廃止する利用者ID,利用者コード,変更する理由\r\n1ANACA0A,1ANAC,統合\r\n".encode()
    form = parse_csv(data, "a.csv")
    assert [p.code for p in form.problems] == ["form.unknown_label"]
