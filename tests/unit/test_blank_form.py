"""The blank forms mailbot hands out: every format, and every one reads back with no problem."""

from __future__ import annotations

import codecs
import io
import typing

import pytest
from openpyxl import load_workbook

from mailbot.blank_form import (
    FORMATS,
    NOTES,
    SHEET_TITLE,
    XLSX_ROWS,
    BlankFormat,
    blank_form_csv,
    blank_form_text,
    blank_form_xlsx,
    write_blank_form,
)
from mailbot.parsers.body import parse_body
from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.labels import CANONICAL_LABEL_JA, FIELD_ORDER, match_label
from mailbot.parsers.xlsx_form import parse_xlsx


def test_text_form_is_unchanged() -> None:
    text = blank_form_text()
    assert text.splitlines()[0] == "■事業所コード：（登録連絡先が1事業所だけの場合は省略可）"
    assert len(text.splitlines()) == len(FIELD_ORDER)
    form = parse_body(text)
    assert list(form.fields) == list(FIELD_ORDER)
    assert all(raw.value == "" for raw in form.fields.values())  # hints are no values


def test_vertical_csv_is_utf8_with_bom_and_crlf() -> None:
    data = blank_form_csv("vertical")
    assert data.startswith(codecs.BOM_UTF8)
    lines = data.decode("utf-8-sig").split("\r\n")
    assert lines[0] == "項目,記入欄,記入方法"
    assert lines[1].startswith("事業所コード,,")
    assert len([line for line in lines if line]) == len(FIELD_ORDER) + 1


def test_table_csv_is_one_header_row_of_labels() -> None:
    text = blank_form_csv("table").decode("utf-8-sig")
    assert text == ",".join(CANONICAL_LABEL_JA[name] for name in FIELD_ORDER) + "\r\n"


@pytest.mark.parametrize("layout", ["vertical", "table"])
def test_blank_csv_reads_back_as_every_field_empty(
    layout: typing.Literal["vertical", "table"],
) -> None:
    form = parse_csv(blank_form_csv(layout), "廃止申込書.csv")
    assert form.problems == []
    assert list(form.fields) == list(FIELD_ORDER)
    assert all(raw.value == "" for raw in form.fields.values())


def test_xlsx_layout() -> None:
    workbook = load_workbook(io.BytesIO(blank_form_xlsx()))
    assert workbook.sheetnames == [SHEET_TITLE]
    sheet = workbook[SHEET_TITLE]
    labels = {
        cell.value: cell.row
        for cell in sheet["A"]
        if isinstance(cell.value, str) and match_label(cell.value)
    }
    assert list(labels) == [CANONICAL_LABEL_JA[name] for name in FIELD_ORDER]
    for name in FIELD_ORDER:
        row = labels[CANONICAL_LABEL_JA[name]]
        assert sheet.cell(row, 3).value == NOTES[name]
        for offset in range(XLSX_ROWS.get(name, 1)):
            value_cell = sheet.cell(row + offset, 2)
            assert value_cell.value is None
            assert value_cell.fill.fill_type == "solid"  # highlighted input cell
            assert value_cell.number_format == "@"  # text: keeps leading zeros
    prompts = sheet.data_validations.dataValidation
    assert len(prompts) == len(FIELD_ORDER)
    assert all(prompt.showInputMessage and prompt.prompt for prompt in prompts)


def test_blank_xlsx_reads_back_as_every_field_empty() -> None:
    form = parse_xlsx(blank_form_xlsx(), "廃止申込書.xlsx")
    assert form.problems == []
    assert list(form.fields) == list(FIELD_ORDER)
    assert form.fields["user_ids"].location == "廃止申込書.xlsx 申込書!B7"


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_blank_form(fmt: BlankFormat) -> None:
    filename, content_type, data = write_blank_form(fmt)
    assert filename.startswith("廃止申込書")
    maintype, _, subtype = content_type.partition("/")
    assert maintype and subtype and ";" not in content_type  # compose() wants TYPE/SUBTYPE
    assert data
    expected_suffix = {"csv": ".csv", "csv-table": ".csv", "xlsx": ".xlsx", "text": ".txt"}
    assert filename.endswith(expected_suffix[fmt])


def test_write_blank_form_text_is_the_text_form() -> None:
    assert write_blank_form("text")[2].decode("utf-8") == blank_form_text()


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="csv-table"):
        write_blank_form(typing.cast(BlankFormat, "pdf"))
