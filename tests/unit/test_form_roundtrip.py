"""Property: any request, written into the blank form of each format the way an applicant fills
it in, parses back to the same raw field values.

The writers start from what ``mailbot form`` hands out (:func:`write_blank_form`) and fill it
in as a person would: column B of the vertical CSV and XLSX (more IDs on rows below, inserting
rows when the XLSX's ten run out), one row per ID in the table CSV, the JSON object of
docs/domain.md#json, and the text form's ``■label：`` lines.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from mailbot.blank_form import write_blank_form
from mailbot.parsers.body import parse_body
from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.form import RawForm
from mailbot.parsers.json_form import parse_json
from mailbot.parsers.labels import CANONICAL_LABEL_JA, FIELD_ORDER, LIST_FIELDS, match_label
from mailbot.parsers.xlsx_form import parse_xlsx


@dataclass(frozen=True)
class Request:
    """Raw values by field; list fields as lists of items."""

    single: dict[str, str]
    lists: dict[str, list[str]]

    def expected(self) -> dict[str, str]:
        out = dict(self.single)
        out.update({name: "\n".join(items) for name, items in self.lists.items()})
        return out

    def value(self, name: str) -> str:
        return self.single[name]


# --- values people type -----------------------------------------------------------------------

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Names and free text: kanji, kana, the CP932 extensions that NFKC would change (㈱ ① Ⅱ) and
# that ISO-2022-JP cannot carry (髙 﨑), Latin, CSV's delimiter and quote. All CP932-encodable.
_TEXT = "山田太郎花子佐藤髙橋﨑㈱①②Ⅱアイウカナ株式会社物流部移管のため年内ABCxyz09 ,\"'・ー"


def _text() -> st.SearchStrategy[str]:
    word = st.text(alphabet=_TEXT.replace(" ", ""), min_size=1, max_size=8)
    words = st.lists(word, min_size=1, max_size=3).map(" ".join)
    return words.filter(lambda text: match_label(text) is None)


_DATES = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
_DATE_TEXT = st.one_of(
    _DATES.map(lambda d: f"{d.year}/{d.month}/{d.day}"),
    _DATES.map(lambda d: d.isoformat()),
    _DATES.map(lambda d: f"{d.year}年{d.month}月{d.day}日"),
    _DATES.map(lambda d: f"令和{d.year - 2018}年{d.month}月{d.day}日"),
)
_EMAIL = st.from_regex(r"[a-z]{1,8}@example\.co\.jp", fullmatch=True)
_PHONE = st.from_regex(r"0[1-9]{1,3}-[0-9]{2,4}-[0-9]{4}", fullmatch=True)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    single = {
        "office_code": draw(st.one_of(st.just(""), st.text(_ALNUM, min_size=5, max_size=5))),
        "desired_start_date": draw(_DATE_TEXT),
        "reason": draw(_text()),
        "applicant_name": draw(_text()),
        "applicant_phone": draw(_PHONE),
        "applicant_email": draw(st.one_of(st.just(""), _EMAIL)),
        "manager_name": draw(_text()),
        "manager_email": draw(_EMAIL),
        "remarks": draw(st.one_of(st.just(""), _text())),
    }
    lists = {
        "user_ids": draw(
            st.lists(st.text(_ALNUM, min_size=8, max_size=8), min_size=1, max_size=14)
        ),
        "abolish_user_codes": draw(st.lists(st.text(_ALNUM, min_size=5, max_size=5), max_size=4)),
    }
    return Request(single, lists)


# --- writers compatible with `mailbot form` ------------------------------------------------------


def vertical_csv(request: Request, codec: str) -> bytes:
    """Fill column B of the blank vertical CSV; more list items on inserted rows below."""
    _, _, blank = write_blank_form("csv")
    rows = list(csv.reader(io.StringIO(blank.decode("utf-8-sig"), newline="")))
    out: list[list[str]] = []
    for row in rows:
        name = match_label(row[0])
        if name in LIST_FIELDS:
            items = request.lists[name] or [""]
            out.append([row[0], items[0], row[2]])
            out.extend(["", item, ""] for item in items[1:])
        elif name is not None:
            out.append([row[0], request.value(name), row[2]])
        else:
            out.append(row)
    return _csv(out, codec)


def table_csv(request: Request, codec: str) -> bytes:
    """One row per user ID under the blank table's header; the other fields in the first row,
    repeated identically in every other row."""
    _, _, blank = write_blank_form("csv-table")
    header = next(csv.reader(io.StringIO(blank.decode("utf-8-sig"))))
    names = [match_label(label) for label in header]
    depth = max(len(items) for items in request.lists.values())
    rows: list[list[str]] = [header]
    for index in range(depth):
        row = []
        for name in names:
            assert name is not None
            if name in LIST_FIELDS:
                items = request.lists[name]
                row.append(items[index] if index < len(items) else "")
            else:
                row.append(request.value(name) if index == 0 or index % 2 else "")
        rows.append(row)
    return _csv(rows, codec)


def _csv(rows: list[list[str]], codec: str) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(codec)


def filled_xlsx(request: Request, _codec: str) -> bytes:
    """Fill the blank workbook's input cells; insert rows when the list slots run out."""
    _, _, blank = write_blank_form("xlsx")
    workbook = load_workbook(io.BytesIO(blank))
    sheet = workbook.active
    rows = {match_label(str(cell.value)): cell.row for cell in sheet["A"] if cell.value}
    for name in reversed(FIELD_ORDER):  # bottom up: inserted rows do not move what is left
        row = rows[name]
        if name in LIST_FIELDS:
            items = request.lists[name]
            slots = next((r for r in rows.values() if r is not None and r > row), 10_000) - row
            if len(items) > slots:
                sheet.insert_rows(row + slots, len(items) - slots)
            for offset, item in enumerate(items):
                sheet.cell(row + offset, 2, item)
        else:
            sheet.cell(row, 2, request.value(name))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def json_object(request: Request, _codec: str) -> bytes:
    document: dict[str, object] = dict(request.single)
    document.update(request.lists)
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def text_body(request: Request, _codec: str) -> str:
    lines = []
    for name in FIELD_ORDER:
        label = CANONICAL_LABEL_JA[name]
        if name in LIST_FIELDS:
            items = request.lists[name] or [""]
            lines.append(f"■{label}：{items[0]}")
            lines.extend(items[1:])
        else:
            lines.append(f"■{label}：{request.value(name)}")
    return "\n".join(lines)


Parser = Callable[[Request, str], RawForm]
PARSERS: dict[str, Parser] = {
    "vertical-csv": lambda r, c: parse_csv(vertical_csv(r, c), "申込書.csv"),
    "table-csv": lambda r, c: parse_csv(table_csv(r, c), "申込書.csv"),
    "xlsx": lambda r, c: parse_xlsx(filled_xlsx(r, c), "申込書.xlsx"),
    "json": lambda r, c: parse_json(json_object(r, c), "申込書.json"),
    "text": lambda r, c: parse_body(text_body(r, c)),
}


@pytest.mark.parametrize("fmt", list(PARSERS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), codec=st.sampled_from(["utf-8-sig", "cp932", "utf-16"]))
def test_written_forms_parse_back_to_the_same_values(
    fmt: str, request: Request, codec: str
) -> None:
    form = PARSERS[fmt](request, codec)
    assert form.problems == []
    got = {name: raw.value for name, raw in form.fields.items()}
    assert got == request.expected()
