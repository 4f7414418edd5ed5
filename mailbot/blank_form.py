"""The blank request form applicants fill in: as text (mail body), CSV (two layouts) and XLSX.

Every version is built from the one label table (:mod:`mailbot.parsers.labels`), so whatever
mailbot hands out, its parsers read back. ``write_blank_form`` is what ``mailbot form`` and
the help and error replies call.

Decisions:

* CSV is UTF-8 **with BOM** and CRLF: Japanese Excel (2016 and later) opens it without
  garbling, and unlike CP932 it can carry any character a name may need (𠮷). The parsers
  read CP932 too, so "CSV (comma-separated)" re-saved by Excel still works.
* Vertical layout (``csv``, and the XLSX): a heading row ``項目 | 記入欄 | 記入方法``, then
  one row per field with the label in column A, the value in column B, and a note in column
  C. The parsers skip columns headed ``記入方法``, so the notes can stay when it is filled in.
  More IDs go in the rows below ``廃止する利用者ID`` with column A left empty.
* Table layout (``csv-table``): one header row of the labels; then one row per user ID, with
  the other fields in the first row (or repeated identically).
* XLSX: one sheet ``申込書``, input cells (column B) yellow, bordered and formatted as text
  so Excel keeps ``0312345678`` and ``00100001`` as typed; ten rows for user IDs and three
  for user codes; a note in column C and an input message on each input cell.

The **pre-filled form** (:class:`Prefill`, attached to the contract reply) is the vertical form
with the office, the applicant's address (the sender's) and name, and the earliest start
date filled in, and below it a mark table: one row per user ID the office can abolish, with
an empty 「廃止」 column to mark (the guide's screen ⑦), like the parsers' "mark table"
(:mod:`mailbot.parsers.grid`). It is built as rows once and written as XLSX or CSV, so
both read back the same.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.worksheet.datavalidation import DataValidation

from mailbot.normalize import ident_of, network_of, user_code_of
from mailbot.parsers.labels import CANONICAL_LABEL_JA, FIELD_ORDER

# What goes after each label in the blank text form: an example or a hint, never a real value.
HINTS = {
    "office_code": "（登録連絡先が1事業所だけの場合は省略可）",
    "user_ids": "（例: 1ANACA0A　複数の場合は1行に1つ）",
    "abolish_user_codes": "（任意　例: 1ANAC）",
    "desired_start_date": "（例: 2026年12月15日）",
    "reason": "",
    "applicant_name": "",
    "applicant_phone": "（例: 03-1234-5678）",
    "applicant_email": "（任意　省略時は送信元アドレス）",
    "manager_name": "",
    "manager_email": "",
    "remarks": "（任意）",
}

# The spreadsheet versions' column C: what to write and whether it is required.
NOTES: Final = {
    "office_code": "登録されている事業所コード。登録連絡先が1事業所だけの場合は省略できます。",
    "user_ids": (
        "必須。廃止する8桁の利用者ID（例: 1ANACA0A）を1セルに1つ。2つ目以降は下の行のB列に"
        "（A列は空欄）。足りなければ行を挿入してください。"
    ),
    "abolish_user_codes": (
        "任意。利用者コードごと廃止する場合の5桁の利用者コード（例: 1ANAC）。"
        "そのコードの利用者IDをすべて上の欄に記入してください。"
    ),
    "desired_start_date": "必須。例: 2026/12/15（スケジュール表のシステム登録日を推奨）",
    "reason": "必須。廃止する理由。",
    "applicant_name": "必須。申込担当者の氏名。",
    "applicant_phone": "必須。例: 03-1234-5678",
    "applicant_email": "任意。省略時はこのメールの送信元アドレス。",
    "manager_name": "必須。管理責任者の氏名。",
    "manager_email": "必須。登録連絡先のメールアドレス。",
    "remarks": "任意。",
}

HEADINGS: Final = ("項目", "記入欄", "記入方法")
SHEET_TITLE: Final = "申込書"
# Input rows per field in the XLSX (list fields get several).
XLSX_ROWS: Final = {"user_ids": 10, "abolish_user_codes": 3}
XLSX_CONTENT_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

BlankFormat = Literal["csv", "csv-table", "xlsx", "text"]
FORMATS: Final[tuple[BlankFormat, ...]] = ("csv", "csv-table", "xlsx", "text")


def blank_form_text() -> str:
    return "\n".join(f"■{CANONICAL_LABEL_JA[name]}：{HINTS[name]}" for name in FIELD_ORDER)


def blank_form_csv(layout: Literal["vertical", "table"]) -> bytes:
    """The blank form as CSV (UTF-8 with BOM, CRLF) in the vertical or the table layout."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    if layout == "table":
        writer.writerow([CANONICAL_LABEL_JA[name] for name in FIELD_ORDER])
    else:
        writer.writerow(HEADINGS)
        for name in FIELD_ORDER:
            writer.writerow([CANONICAL_LABEL_JA[name], "", NOTES[name]])
    return buffer.getvalue().encode("utf-8-sig")


# The workbook's "created" date: the form's, not the time it is sent. Not everything is fixed:
# openpyxl stamps "modified" and each zip entry with the time of writing, so two copies of the
# same form differ in those bytes (test_notice_bytes compares an XLSX member by member).
_EPOCH = datetime(2026, 1, 1)
_INPUT_FILL = PatternFill(fill_type="solid", start_color="FFFFF2CC", end_color="FFFFF2CC")
_HEAD_FILL = PatternFill(fill_type="solid", start_color="FFD9D9D9", end_color="FFD9D9D9")
_THIN = Side(style="thin", color="FF999999")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_INTRO = (
    "黄色のセル（B列）に記入し、このファイル（.xlsx）のままメールに添付して送ってください。",
    "項目名（A列）は変えないでください。C列の記入方法は残したままで構いません。",
)


def blank_form_xlsx() -> bytes:
    """The blank form as an XLSX workbook (vertical layout; see the module docstring)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET_TITLE
    sheet["A1"] = "利用者ID 廃止申込書"
    sheet["A1"].font = Font(bold=True, size=14)
    for offset, line in enumerate(_INTRO, start=2):
        sheet.cell(offset, 1, line)
    heading_row = len(_INTRO) + 3
    for column, heading in enumerate(HEADINGS, start=1):
        cell = sheet.cell(heading_row, column, heading)
        cell.font = Font(bold=True)
        cell.fill = _HEAD_FILL
        cell.border = _BOX
    row = heading_row + 1
    for name in FIELD_ORDER:
        row = _field_rows(sheet, row, name)
    sheet.column_dimensions["A"].width = 30
    sheet.column_dimensions["B"].width = 40
    sheet.column_dimensions["C"].width = 70
    sheet.freeze_panes = sheet.cell(heading_row + 1, 1)
    return _xlsx_bytes(workbook)


def _xlsx_bytes(workbook: Workbook) -> bytes:
    workbook.properties.creator = "mailbot"
    workbook.properties.created = _EPOCH
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _field_rows(sheet: Any, row: int, name: str) -> int:
    """Write one field's label, input cells and note from ``row``; the next free row."""
    label = CANONICAL_LABEL_JA[name]
    cell = sheet.cell(row, 1, label)
    cell.font = Font(bold=True)
    cell.border = _BOX
    note = sheet.cell(row, 3, NOTES[name])
    note.alignment = Alignment(wrap_text=True, vertical="top")
    note.font = Font(color="FF595959", size=9)
    count = XLSX_ROWS.get(name, 1)
    # An input message: Excel shows it when the cell is selected (入力時メッセージ).
    prompt = DataValidation(allow_blank=True, showInputMessage=True)
    prompt.promptTitle = label[:32]
    prompt.prompt = NOTES[name][:255]
    sheet.add_data_validation(prompt)
    for offset in range(count):
        target = sheet.cell(row + offset, 2)
        target.fill = _INPUT_FILL
        target.border = _BOX
        target.number_format = "@"  # text: keeps leading zeros and dates as typed
        prompt.add(target)
    return row + count


def write_blank_form(fmt: BlankFormat) -> tuple[str, str, bytes]:
    """(file name, content type, bytes) of the blank form in ``fmt``, ready to attach."""
    if fmt == "csv":
        return "廃止申込書.csv", "text/csv", blank_form_csv("vertical")
    if fmt == "csv-table":
        return "廃止申込書_一覧形式.csv", "text/csv", blank_form_csv("table")
    if fmt == "xlsx":
        return "廃止申込書.xlsx", XLSX_CONTENT_TYPE, blank_form_xlsx()
    if fmt == "text":
        return "廃止申込書.txt", "text/plain", blank_form_text().encode("utf-8")
    raise ValueError(f"unknown blank form format {fmt!r}; use one of {', '.join(FORMATS)}")


# --- the pre-filled form of the contract reply ----------------------------------------------

MARK_HEADING: Final = "廃止"
MARK_TABLE_HEADINGS: Final = (
    MARK_HEADING,
    CANONICAL_LABEL_JA["user_ids"],
    "利用者コード",
    "識別番号",
    "区分",
)
# The vertical part: every field but the ID lists (the table below takes the IDs; marking all
# of a code's IDs abolishes the code too, docs/domain.md rule 3).
PREFILL_FIELDS: Final = tuple(f for f in FIELD_ORDER if f not in ("user_ids", "abolish_user_codes"))
PREFILL_NOTES: Final = {
    **NOTES,
    "office_code": "記入済み。変更しないでください。",
    "desired_start_date": (
        "必須。記入済みの日付は、この申込書の作成時点で指定できる最短のシステム登録日です。"
        "変更する場合はスケジュール表のシステム登録日を記入してください。"
    ),
    "applicant_email": "記入済み（この申込書の請求元アドレス）。",
}


@dataclass(frozen=True)
class Prefill:
    """What the contract reply fills in for one office."""

    office_code: str
    office_line: str  # 「○○株式会社 東京事業所 通関部」, for the title
    applicant_name: str
    applicant_email: str
    desired_start_date: date | None
    user_ids: Sequence[str]  # the office's IDs that can be abolished now, in order
    contacts: Sequence[str] = ()  # the office's registered contacts, for the manager's note


def prefilled_rows(prefill: Prefill) -> list[list[str]]:
    """The pre-filled form as rows of cells (the same for XLSX and CSV)."""
    values = {
        "office_code": prefill.office_code,
        "desired_start_date": (
            prefill.desired_start_date.strftime("%Y/%m/%d") if prefill.desired_start_date else ""
        ),
        "applicant_name": prefill.applicant_name,
        "applicant_email": prefill.applicant_email,
    }
    notes = dict(PREFILL_NOTES)
    if prefill.contacts:
        notes["manager_email"] = "必須。この事業所の登録連絡先のいずれか: " + "、".join(
            prefill.contacts
        )
    rows: list[list[str]] = [
        ["利用者ID 廃止申込書（記入済み）"],
        [f"事業所: {prefill.office_line}（{prefill.office_code}）"],
        [
            "廃止する利用者IDの「廃止」欄に○を記入し、黄色の欄を記入して、このファイルのまま返信に添付してください。"
        ],
        ["項目名と利用者IDは変えないでください。廃止しない利用者IDの行は空欄のままにします。"],
        [],
        list(HEADINGS),
        *([CANONICAL_LABEL_JA[name], values.get(name, ""), notes[name]] for name in PREFILL_FIELDS),
        [],
        list(MARK_TABLE_HEADINGS),
        *(
            ["", user_id, user_code_of(user_id), ident_of(user_id), _network_ja(user_id)]
            for user_id in prefill.user_ids
        ),
    ]
    return rows


def _network_ja(user_id: str) -> str:
    return "netNACCS" if network_of(user_id) == "netnaccs" else "一般NACCS"


def prefilled_form_csv(prefill: Prefill) -> bytes:
    """The pre-filled form as CSV (UTF-8 with BOM, CRLF), for those without Excel."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(prefilled_rows(prefill))
    return buffer.getvalue().encode("utf-8-sig")


def prefilled_form_xlsx(prefill: Prefill) -> bytes:
    """The pre-filled form as XLSX: input cells yellow and formatted as text, marks boxed."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET_TITLE
    rows = prefilled_rows(prefill)
    heading_row = rows.index(list(HEADINGS)) + 1
    table_row = rows.index(list(MARK_TABLE_HEADINGS)) + 1
    for number, cells in enumerate(rows, start=1):
        for column, value in enumerate(cells, start=1):
            cell = sheet.cell(number, column, value)
            cell.number_format = "@"
            if number in (heading_row, table_row):
                cell.font = Font(bold=True)
                cell.fill = _HEAD_FILL
                cell.border = _BOX
            elif heading_row < number < table_row - 1:
                _style_vertical(cell, column)
            elif number > table_row:
                cell.border = _BOX
                if column == 1:
                    cell.fill = _INPUT_FILL
                    cell.alignment = Alignment(horizontal="center")
    sheet["A1"].font = Font(bold=True, size=14)
    mark = DataValidation(allow_blank=True, showInputMessage=True)
    mark.promptTitle = "廃止"
    mark.prompt = "廃止する利用者IDには○を記入してください（x、1、✓も可）。廃止しない場合は空欄。"
    sheet.add_data_validation(mark)
    if prefill.user_ids:
        mark.add(f"A{table_row + 1}:A{table_row + len(prefill.user_ids)}")
    # C holds the vertical part's notes and the table's user codes.
    for letter, width in zip("ABCDE", (30, 40, 56, 10, 12), strict=True):
        sheet.column_dimensions[letter].width = width
    return _xlsx_bytes(workbook)


def _style_vertical(cell: Any, column: int) -> None:
    if column == 1:
        cell.font = Font(bold=True)
        cell.border = _BOX
    elif column == 2:
        cell.fill = _INPUT_FILL
        cell.border = _BOX
    elif column == 3:
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        cell.font = Font(color="FF595959", size=9)


def prefilled_attachments(prefill: Prefill) -> list[tuple[str, str, bytes]]:
    """(file name, content type, bytes) of the XLSX and the CSV, named after the office."""
    stem = f"廃止申込書_{prefill.office_code}"
    return [
        (f"{stem}.xlsx", XLSX_CONTENT_TYPE, prefilled_form_xlsx(prefill)),
        (f"{stem}.csv", "text/csv", prefilled_form_csv(prefill)),
    ]
