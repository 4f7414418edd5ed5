"""XLSX request forms: values not formulas, dates, sheets, refused formats, zip bombs."""

from __future__ import annotations

import io
import re
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime
from datetime import time as clock

import pytest
from openpyxl import Workbook
from openpyxl.styles import PatternFill
from openpyxl.utils.datetime import to_excel

from mailbot.parsers.form import RawForm
from mailbot.parsers.xlsx_form import (
    MAX_ROWS,
    MAX_UNCOMPRESSED_BYTES,
    cell_text,
    parse_xlsx,
)

NAME = "申込書.xlsx"
Rows = Sequence[Sequence[object]]


def values(form: RawForm) -> dict[str, str]:
    return {name: raw.value for name, raw in form.fields.items()}


def where(form: RawForm) -> dict[str, str | None]:
    return {name: raw.location for name, raw in form.fields.items()}


def codes(form: RawForm) -> list[tuple[str, str | None]]:
    return [(problem.code, problem.location) for problem in form.problems]


def xlsx(*sheets: tuple[str, Rows], hidden: Sequence[str] = ()) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
        if title in hidden:
            sheet.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


VERTICAL: Rows = [
    ["事業所コード", "TYO01"],
    ["廃止する利用者ID", "1ANACA0A"],
    [None, "1ANACA0B"],
    ["利用開始希望日", datetime(2026, 12, 15)],
    ["変更する理由", "移管のため"],
    ["申込担当者", "㈱髙橋商事 髙橋 ①郎"],
    ["申込担当者電話番号", "03-1234-5678"],
    ["管理責任者", "佐藤 花子"],
    ["管理責任者メールアドレス", "sato@example.co.jp"],
]


def test_vertical_form_with_cell_locations() -> None:
    form = parse_xlsx(xlsx(("Sheet1", VERTICAL)), NAME)
    assert form.problems == []
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "desired_start_date": "2026-12-15",
        "reason": "移管のため",
        "applicant_name": "㈱髙橋商事 髙橋 ①郎",
        "applicant_phone": "03-1234-5678",
        "manager_name": "佐藤 花子",
        "manager_email": "sato@example.co.jp",
    }
    assert where(form)["user_ids"] == f"{NAME} Sheet1!B2"
    assert form.source == NAME


def test_table_form() -> None:
    rows: Rows = [
        ["廃止する利用者ID", "申込担当者", "利用開始希望日"],
        ["1ANACA0A", "山田", "2026/12/15"],
        ["1ANACA0B", "山田", None],
    ]
    form = parse_xlsx(xlsx(("申込書", rows)), NAME)
    assert form.problems == []
    assert values(form) == {
        "user_ids": "1ANACA0A\n1ANACA0B",
        "applicant_name": "山田",
        "desired_start_date": "2026/12/15",
    }


def test_table_conflict_names_both_cells_with_the_sheet() -> None:
    rows: Rows = [["廃止する利用者ID", "申込担当者"], ["1ANACA0A", "山田"], ["1ANACA0B", "鈴木"]]
    form = parse_xlsx(xlsx(("申込 書", rows)), NAME)
    assert codes(form) == [("form.duplicate_field", f"{NAME} '申込 書'!B3")]
    assert f"{NAME} '申込 書'!B2" in form.problems[0].message_ja


@pytest.mark.parametrize(
    ("stored", "text"),
    [
        (datetime(2026, 12, 15), "2026-12-15"),
        (date(2026, 12, 15), "2026-12-15"),
        ("2026/12/15", "2026/12/15"),
        ("令和8年12月15日", "令和8年12月15日"),
        (20261215, "20261215"),
        (20261215.0, "20261215"),
    ],
)
def test_dates_stored_as_dates_text_or_numbers(stored: object, text: str) -> None:
    rows: Rows = [["廃止する利用者ID", "1ANACA0A"], ["利用開始希望日", stored]]
    assert values(parse_xlsx(xlsx(("Sheet1", rows)), NAME))["desired_start_date"] == text


def test_cell_text() -> None:
    assert cell_text(None) == ""
    assert cell_text(True) == "TRUE"
    assert cell_text(3.5) == "3.5"
    assert cell_text(12345678) == "12345678"
    assert cell_text(datetime(2026, 12, 15, 10, 30)) == "2026-12-15 10:30:00"
    assert cell_text(clock(10, 30)) == "10:30:00"


def rewritten(
    data: bytes, sheet: Callable[[str], str], extra: dict[str, bytes] | None = None
) -> bytes:
    """The workbook with its first sheet's XML passed through ``sheet``, and ``extra`` members."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = sheet(content.decode()).encode()
            target.writestr(info, content)
        for name, member in (extra or {}).items():
            target.writestr(name, member)
    return out.getvalue()


def _with_cached_values(data: bytes, cached: dict[str, tuple[str, str]]) -> bytes:
    """Give formula cells the value Excel would have stored (openpyxl writes none)."""

    def cache(xml: str) -> str:
        for ref, (kind, value) in cached.items():
            pattern = rf'<c r="{ref}"([^>]*)>(<f>[^<]*</f>)<v\s*/>'
            xml = re.sub(pattern, rf'<c r="{ref}"\1 t="{kind}">\2<v>{value}</v>', xml)
        return xml

    return rewritten(data, cache)


def test_formulas_give_their_cached_values() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(["廃止する利用者ID", '=CONCATENATE("1ANAC","A0A")'])
    sheet.append(["利用開始希望日", "=DATE(2026,12,15)"])
    sheet.append(["申込担当者", "=Sheet2!A1"])
    sheet["B2"].number_format = "yyyy/mm/dd"
    buffer = io.BytesIO()
    workbook.save(buffer)
    serial = str(int(to_excel(datetime(2026, 12, 15))))
    data = _with_cached_values(buffer.getvalue(), {"B1": ("str", "1ANACA0A"), "B2": ("n", serial)})
    form = parse_xlsx(data, NAME)
    assert values(form) == {
        "user_ids": "1ANACA0A",
        "desired_start_date": "2026-12-15",
        "applicant_name": "",  # a formula never calculated has no value to read
    }


def test_furigana_that_japanese_excel_stores_is_not_part_of_the_value() -> None:
    def furigana(xml: str) -> str:
        typed = '<is><t>山田 太郎</t><rPh sb="0" eb="2"><t>ヤマダ</t></rPh><phoneticPr fontId="1"/></is>'
        return xml.replace("<is><t>NAME</t></is>", typed)

    data = rewritten(
        xlsx(("Sheet1", [["申込担当者", "NAME"], ["事業所コード", "TYO01"]])), furigana
    )
    assert values(parse_xlsx(data, NAME))["applicant_name"] == "山田 太郎"


def test_empty_trailing_rows_and_columns_are_ignored() -> None:
    workbook = Workbook()
    sheet = workbook.active
    for row in VERTICAL[:3]:
        sheet.append(list(row))
    for ref in ("Z1", "A500", "C2", "AA900"):
        sheet[ref].fill = PatternFill(fill_type="solid", start_color="FFFFFF00")  # formatted
    sheet["D300"] = "   "
    buffer = io.BytesIO()
    workbook.save(buffer)
    form = parse_xlsx(buffer.getvalue(), NAME)
    assert form.problems == []
    assert values(form) == {"office_code": "TYO01", "user_ids": "1ANACA0A\n1ANACA0B"}


def test_a_wrong_dimension_record_does_not_hide_cells() -> None:
    def shrink(xml: str) -> str:
        assert "<dimension " in xml
        return re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1"', xml)

    data = rewritten(xlsx(("Sheet1", VERTICAL)), shrink)
    assert values(parse_xlsx(data, NAME))["office_code"] == "TYO01"


def test_the_first_sheet_that_holds_a_form_is_read() -> None:
    notes: Rows = [["記入方法"], ["申込書シートに記入してください"]]
    lookup: Rows = [["事業所コード", "廃止する利用者ID"], ["X", "1ANACZZZ"]]
    data = xlsx(("説明", notes), ("リスト", lookup), ("申込書", VERTICAL), hidden=["リスト"])
    form = parse_xlsx(data, NAME)
    assert values(form)["office_code"] == "TYO01"  # the visible form, not the hidden list
    assert where(form)["office_code"] == f"{NAME} 申込書!B1"


def test_a_workbook_without_a_form() -> None:
    form = parse_xlsx(xlsx(("Sheet1", [["売上", 100], ["原価", 50]])), "集計.xlsx")
    assert codes(form) == [("file.no_form", "集計.xlsx")]


def test_too_many_rows() -> None:
    rows: Rows = [["廃止する利用者ID"]] + [[None, f"{n:08d}"] for n in range(MAX_ROWS + 5)]
    form = parse_xlsx(xlsx(("Sheet1", rows)), NAME)
    assert [p.code for p in form.problems] == ["file.too_many_rows"]


# --- refused formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["申込書.xlsm", "申込書.XLS", "申込書.xlsb", "申込書.ods"])
def test_refused_by_name(filename: str) -> None:
    form = parse_xlsx(xlsx(("Sheet1", VERTICAL)), filename)
    assert codes(form) == [("file.format_refused", filename)]
    message = form.problems[0].message_ja
    assert ".xlsx" in message and ".csv" in message


def test_old_xls_or_encrypted_content_is_refused_whatever_the_name() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048)
    form = parse_xlsx(ole, NAME)
    assert codes(form) == [("file.format_refused", NAME)]
    assert "パスワード" in form.problems[0].message_ja


def test_macro_workbook_named_xlsx_is_refused() -> None:
    data = rewritten(xlsx(("Sheet1", VERTICAL)), str, {"xl/vbaProject.bin": bytes(100)})
    assert [p.code for p in parse_xlsx(data, NAME).problems] == ["file.format_refused"]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a workbook at all", b"PK\x03\x04garbage", bytes(range(256)) * 8],
    ids=["empty", "text", "bad-zip", "random"],
)
def test_garbage_named_xlsx_is_one_clear_problem(data: bytes) -> None:
    assert codes(parse_xlsx(data, NAME)) == [("file.broken", NAME)]


def test_a_zip_that_is_no_workbook() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert codes(parse_xlsx(buffer.getvalue(), NAME)) == [("file.broken", NAME)]


# --- zip bombs ----------------------------------------------------------------------------------------


def _bomb(megabytes: int, members: int = 1) -> bytes:
    """A zip whose members inflate to ``megabytes`` MB of zeros each, written streaming."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        for index in range(members):
            name = f"xl/worksheets/sheet{index + 1}.xml"
            with archive.open(name, "w", force_zip64=True) as member:
                for _ in range(megabytes):
                    member.write(block)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb_200mb() -> bytes:
    return _bomb(200)


def _measured(data: bytes) -> tuple[RawForm, int, float]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        form = parse_xlsx(data, "bomb.xlsx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return form, peak, time.perf_counter() - started


def test_zip_bomb_is_refused_before_anything_is_inflated(bomb_200mb: bytes) -> None:
    assert len(bomb_200mb) < 2 * 1024 * 1024  # 200 MB of zeros, compressed
    form, peak, seconds = _measured(bomb_200mb)
    assert codes(form) == [("file.unsafe_archive", "bomb.xlsx")]
    assert "200 MB" in form.problems[0].message_ja
    assert peak < 2 * 1024 * 1024, peak
    assert seconds < 0.5


def test_small_bomb_is_refused_by_its_ratio() -> None:
    data = _bomb(MAX_UNCOMPRESSED_BYTES // (1024 * 1024) - 5)  # under the size limit
    assert [p.code for p in parse_xlsx(data, NAME).problems] == ["file.unsafe_archive"]


def test_too_many_members_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(1_500):
            archive.writestr(f"x/{index}.xml", "")
    assert [p.code for p in parse_xlsx(buffer.getvalue(), NAME).problems] == ["file.unsafe_archive"]
