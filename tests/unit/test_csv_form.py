"""CSV request forms: encodings, both layouts, cell locations, and hostile files."""

from __future__ import annotations

import codecs
import email
import time
import tracemalloc
from email import policy
from pathlib import Path

import pytest

from mailbot.parsers.csv_form import MAX_ROWS, parse_csv, sniff_encoding
from mailbot.parsers.form import RawForm
from mailbot.parsers.grid import GridRow, column_letter, form_from_grid, grid_row, may_be_label
from mailbot.parsers.labels import LABEL_ALIASES, match_label

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # docs/japanese-mail.md#the-sample-mails
NAME = "申込書.csv"


def values(form: RawForm) -> dict[str, str]:
    return {name: raw.value for name, raw in form.fields.items()}


def where(form: RawForm) -> dict[str, str | None]:
    return {name: raw.location for name, raw in form.fields.items()}


def codes(form: RawForm) -> list[tuple[str, str | None]]:
    return [(problem.code, problem.location) for problem in form.problems]


def csv_bytes(text: str, codec: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(codec)


VERTICAL = """\
事業所コード,TYO01
廃止する利用者ID,1ANACA0A
,1ANACA0B
利用開始希望日,2026/12/22
変更する理由,担当業務の移管のため
申込担当者,㈱髙橋商事 髙橋 ①郎
申込担当者電話番号,03-1234-5678
管理責任者,佐藤 花子
管理責任者メールアドレス,sato@example.co.jp
"""

TABLE = """\
廃止する利用者ID,事業所コード,利用開始希望日,変更する理由,申込担当者,申込担当者電話番号,管理責任者,管理責任者メールアドレス
1ANACA0A,TYO01,2026/12/22,移管のため,山田 太郎,03-1234-5678,佐藤 花子,sato@example.co.jp
1ANACA0B,TYO01,,,,,,
1ANACA0C,,2026/12/22,,,,,
"""

EXPECTED_VERTICAL = {
    "office_code": "TYO01",
    "user_ids": "1ANACA0A\n1ANACA0B",
    "desired_start_date": "2026/12/22",
    "reason": "担当業務の移管のため",
    "applicant_name": "㈱髙橋商事 髙橋 ①郎",
    "applicant_phone": "03-1234-5678",
    "manager_name": "佐藤 花子",
    "manager_email": "sato@example.co.jp",
}


# --- the shared sample ------------------------------------------------------------------------


def test_sample_cp932_attachment() -> None:
    message = email.message_from_bytes(
        (SAMPLES / "request-csv-cp932.eml").read_bytes(), policy=policy.compat32
    )
    part = next(p for p in message.walk() if p.get_content_type() == "text/csv")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    form = parse_csv(payload, "廃止申込書.csv")
    assert form.problems == []
    assert values(form)["user_ids"] == "1ANAC001"
    assert values(form)["remarks"] == "～年内にお願いします"  # CP932 0x8160, not 〜
    assert where(form)["office_code"] == "廃止申込書.csv B2"  # row 1 is "項目,内容"


# --- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "cp932", "utf-16"])
def test_vertical_in_every_encoding(codec: str) -> None:
    form = parse_csv(csv_bytes(VERTICAL, codec), NAME)
    assert form.problems == []
    assert values(form) == EXPECTED_VERTICAL  # ㈱ 髙 ① kept as typed, never NFKC'd


@pytest.mark.parametrize("text", ["申込担当者,山田 太郎\n", "申込担当者,ﾔﾏﾀﾞ ﾀﾛｳ\n"])
def test_euc_jp_is_told_from_cp932(text: str) -> None:
    # EUC-JP bytes are often valid CP932 too, read as half-width katakana (山田 as ｻｳﾅﾄ).
    assert sniff_encoding(text.encode("euc-jp")) == "euc-jp"
    assert sniff_encoding(text.encode("cp932")) == "cp932"  # half-width kana typed in CP932
    assert values(parse_csv(text.encode("euc-jp"), NAME)) == {"applicant_name": text[6:-1]}


def test_euc_jp_form_reads_as_typed() -> None:
    text = VERTICAL.replace("㈱", "株式会社").replace("髙", "高").replace("①", "1")
    form = parse_csv(text.encode("euc-jp"), NAME)
    assert form.problems == []
    assert values(form) == values(parse_csv(text.encode("utf-8"), NAME))


def test_excel_unicode_text_is_tab_separated_utf16le_with_bom() -> None:
    data = codecs.BOM_UTF16_LE + csv_bytes(VERTICAL.replace(",", "\t"), "utf-16-le")
    form = parse_csv(data, "申込書.txt")
    assert values(form) == EXPECTED_VERTICAL
    assert where(form)["user_ids"] == "申込書.txt B2"


def test_utf16_without_bom_is_recognised() -> None:
    assert sniff_encoding(csv_bytes(VERTICAL, "utf-16-le")) == "utf-16-le"
    assert values(parse_csv(csv_bytes(VERTICAL, "utf-16-be"), NAME)) == EXPECTED_VERTICAL


def test_tab_separated_utf8_with_commas_in_values() -> None:
    text = "廃止する利用者ID\t1ANACA0A, 1ANACA0B\n申込担当者\t山田, 太郎\n"
    assert values(parse_csv(text.encode(), NAME)) == {
        "user_ids": "1ANACA0A, 1ANACA0B",
        "applicant_name": "山田, 太郎",
    }


def test_old_mac_line_endings() -> None:
    data = VERTICAL.replace("\n", "\r").encode("cp932")
    assert values(parse_csv(data, NAME)) == EXPECTED_VERTICAL


def test_crlf_split_between_read_chunks_keeps_row_numbers() -> None:
    # The CR of a CRLF is the last character of the first 64 K chunk: no phantom empty row.
    head = "廃止する利用者ID,1ANACA0A\r\n"
    filler = ",1ANACA0B," + "x" * (65535 - len(head) - len(",1ANACA0B,"))
    text = head + filler + "\r\n" + "申込担当者,山田\r\n"
    assert text.index("\r\n", len(head)) == 65535
    form = parse_csv(text.encode("ascii", "ignore") if text.isascii() else text.encode(), NAME)
    assert where(form)["applicant_name"] == f"{NAME} B3"


def test_quoted_multiline_cells() -> None:
    text = '変更する理由,"1行目\n2行目"\n廃止する利用者ID,"1ANACA0A\n1ANACA0B"\n申込担当者,"山田 ""太郎"""\n'
    form = parse_csv(text.encode(), NAME)
    assert values(form) == {
        "reason": "1行目\n2行目",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "applicant_name": '山田 "太郎"',
    }
    assert where(form)["user_ids"] == f"{NAME} B2"  # Excel's row, not the physical line


# --- labels ---------------------------------------------------------------------------------------


def test_header_cells_with_full_width_spaces_notes_and_colons() -> None:
    text = (
        "　事業所コード　：,TYO01\n"
        "【廃止する利用者ＩＤ】※8桁,１ＡＮＡＣＡ０Ａ\n"
        "利用開始希望日（必須）:,2026/12/22\n"
        "■申込担当者：,山田\n"
    )
    form = parse_csv(text.encode("cp932"), NAME)
    assert form.problems == []
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "１ＡＮＡＣＡ０Ａ",  # raw: draft.py normalises IDs
        "desired_start_date": "2026/12/22",
        "applicant_name": "山田",
    }


def test_english_labels() -> None:
    text = "office_code,TYO01\nuser_ids,1ANACA0A,1ANACA0B\nreason,Moving\n"
    assert values(parse_csv(text.encode(), NAME)) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "reason": "Moving",
    }


def test_unknown_label_after_the_form_starts_is_reported_with_its_cell() -> None:
    text = "事業所コード,TYO01\n会社名,ABC商事\n廃止する利用者ID,1ANACA0A\n"
    form = parse_csv(text.encode(), NAME)
    assert codes(form) == [("form.unknown_label", f"{NAME} A2")]
    assert form.problems[0].value == "会社名"
    assert "会社名" in form.problems[0].message_ja


def test_title_and_instructions_above_the_form_are_not_read() -> None:
    text = "利用者ID廃止申込書,,2026/11/28\n黄色のセルに記入してください\n\n" + VERTICAL
    form = parse_csv(text.encode(), NAME)
    assert form.problems == []
    assert where(form)["office_code"] == f"{NAME} B4"


def test_a_file_without_labels_is_one_problem() -> None:
    form = parse_csv(b"1ANACA0A\n1ANACA0B\n", "ids.csv")
    assert values(form) == {}
    assert codes(form) == [("file.no_form", "ids.csv")]
    assert "ids.csv" in form.problems[0].message_ja


# --- the vertical layout --------------------------------------------------------------------------


def test_list_values_across_columns_and_continuation_rows() -> None:
    text = "廃止する利用者ID,1ANACA0A,1ANACA0B\n,1ANACA0C\n\n,1ANACA0D\n申込担当者,山田\n"
    form = parse_csv(text.encode(), NAME)
    assert values(form)["user_ids"] == "1ANACA0A\n1ANACA0B\n1ANACA0C\n1ANACA0D"
    assert where(form)["user_ids"] == f"{NAME} B1"


def test_ids_listed_down_the_label_column() -> None:
    text = "廃止する利用者ID\n1ANACA0A\n1ANACA0B\n申込担当者,山田\n"
    assert values(parse_csv(text.encode(), NAME))["user_ids"] == "1ANACA0A\n1ANACA0B"


def test_label_row_without_value_then_value_below() -> None:
    form = parse_csv("廃止する利用者ID\n,1ANACA0A\n".encode(), NAME)
    assert values(form) == {"user_ids": "1ANACA0A"}
    assert where(form)["user_ids"] == f"{NAME} B2"


def test_empty_value_points_at_the_input_cell() -> None:
    form = parse_csv("申込担当者,\n事業所コード,TYO01\n".encode(), NAME)
    assert values(form)["applicant_name"] == ""
    assert where(form)["applicant_name"] == f"{NAME} B1"


def test_free_text_continues_on_rows_below() -> None:
    form = parse_csv("変更する理由,移管のため\n,年内に完了予定\n備考,なし\n".encode(), NAME)
    assert values(form)["reason"] == "移管のため\n年内に完了予定"


def test_labels_in_column_b_after_a_numbering_column() -> None:
    text = "1,事業所コード,TYO01\n2,廃止する利用者ID,1ANACA0A\n,,1ANACA0B\n③,申込担当者,山田\n"
    form = parse_csv(text.encode(), NAME)
    assert form.problems == []
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "applicant_name": "山田",
    }
    assert where(form)["office_code"] == f"{NAME} C1"


def test_heading_row_marks_a_notes_column_that_is_never_read() -> None:
    text = (
        "項目,記入欄,記入方法\n"
        "事業所コード,TYO01,登録されている事業所コード\n"
        "廃止する利用者ID,1ANACA0A,8桁（例: 1ANACA0A）\n"
        ",1ANACA0B,\n"
    )
    form = parse_csv(text.encode(), NAME)
    assert form.problems == []
    assert values(form) == {"office_code": "TYO01", "user_ids": "1ANACA0A\n1ANACA0B"}


def test_second_value_of_a_single_field_is_reported_with_its_cells() -> None:
    form = parse_csv("申込担当者,山田,太郎\n事業所コード,TYO01\n,TYO02\n".encode(), NAME)
    assert values(form)["applicant_name"] == "山田"
    assert codes(form) == [
        ("form.extra_value", f"{NAME} C1"),
        ("form.extra_value", f"{NAME} B3"),
    ]
    assert "C1" in form.problems[0].message_ja and "太郎" in form.problems[0].message_ja


def test_unlabelled_value_inside_the_form_is_reported() -> None:
    text = "事業所コード,TYO01\n※以下は任意\n,1ANACA0Z\n申込担当者,山田\n"
    form = parse_csv(text.encode(), NAME)
    assert codes(form) == [("form.unlabelled_value", f"{NAME} B3")]


def test_same_label_twice_with_different_values_names_both_cells() -> None:
    form = parse_csv("申込担当者,山田\n事業所コード,TYO01\n申込担当者,鈴木\n".encode(), NAME)
    assert codes(form) == [("form.duplicate_field", f"{NAME} B3")]
    message = form.problems[0].message_ja
    assert f"{NAME} B1" in message and f"{NAME} B3" in message
    assert "山田" in message and "鈴木" in message


def test_same_label_twice_with_the_same_value_is_fine() -> None:
    form = parse_csv("申込担当者,山田 太郎\n申込担当者,山田　太郎\n".encode(), NAME)
    assert form.problems == []


def test_value_that_happens_to_be_a_label_word() -> None:
    text = "廃止する利用者ID,1ANACA0A\n変更する理由,その他\n備考,その他\n"
    assert values(parse_csv(text.encode(), NAME)) == {
        "user_ids": "1ANACA0A",
        "reason": "その他",
        "remarks": "その他",
    }


# --- the table layout -------------------------------------------------------------------------------


def test_table_layout() -> None:
    form = parse_csv(csv_bytes(TABLE, "cp932"), NAME)
    assert form.problems == []
    assert values(form) == {
        "user_ids": "1ANACA0A\n1ANACA0B\n1ANACA0C",
        "office_code": "TYO01",
        "desired_start_date": "2026/12/22",
        "reason": "移管のため",
        "applicant_name": "山田 太郎",
        "applicant_phone": "03-1234-5678",
        "manager_name": "佐藤 花子",
        "manager_email": "sato@example.co.jp",
    }
    assert where(form)["user_ids"] == f"{NAME} A2"
    assert where(form)["manager_email"] == f"{NAME} H2"


def test_table_differing_repeated_value_names_both_cells_once_per_field() -> None:
    text = (
        "廃止する利用者ID,申込担当者,備考\n"
        "1ANACA0A,山田,旧端末\n"
        "1ANACA0B,鈴木,旧端末\n"
        "1ANACA0C,佐藤,\n"
    )
    form = parse_csv(text.encode(), NAME)
    assert codes(form) == [("form.duplicate_field", f"{NAME} B3")]
    assert f"{NAME} B2" in form.problems[0].message_ja


def test_table_header_with_unknown_and_ignorable_columns() -> None:
    text = "No.,廃止する利用者ID,会社名,申込担当者\n1,1ANACA0A,ABC,山田\n2,1ANACA0B,ABC,\n"
    form = parse_csv(text.encode(), NAME)
    assert values(form) == {"user_ids": "1ANACA0A\n1ANACA0B", "applicant_name": "山田"}
    assert codes(form) == [("form.unknown_label", f"{NAME} C1")]


def test_table_with_full_width_header_cells_and_notes() -> None:
    text = "廃止する利用者ＩＤ　※8桁,利用開始希望日（YYYY/MM/DD）：\n1ANACA0A,2026/12/22\n"
    assert values(parse_csv(text.encode("cp932"), NAME)) == {
        "user_ids": "1ANACA0A",
        "desired_start_date": "2026/12/22",
    }


def test_table_below_a_vertical_block() -> None:
    text = (
        "申込担当者,山田\n"
        "管理責任者,佐藤\n"
        "\n"
        "廃止する利用者ID,備考\n"
        "1ANACA0A,\n"
        "1ANACA0B,\n"
        "※IDは8桁で記入\n"
    )
    form = parse_csv(text.encode(), NAME)
    assert form.problems == []
    assert values(form) == {
        "applicant_name": "山田",
        "manager_name": "佐藤",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "remarks": "",
    }


def test_blank_table_header_alone() -> None:
    form = parse_csv("廃止する利用者ID,申込担当者\n".encode(), NAME)
    assert values(form) == {"user_ids": "", "applicant_name": ""}
    assert where(form)["applicant_name"] == f"{NAME} B2"


# --- the grid helpers ---------------------------------------------------------------------------------


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "A", "B", "Z", "AA", "AB", "ZZ", "AAA",
    ]  # fmt: skip


def test_grid_row_trims_and_drops_trailing_empties() -> None:
    assert grid_row(3, ["　a ", "", " ", ""]) == GridRow(3, ("a",))
    assert grid_row(4, ["", "　"]) is None


def test_form_from_grid_uses_the_cell_prefix() -> None:
    rows = [GridRow(2, ("申込担当者", "山田"))]
    form = form_from_grid(rows, source="x.xlsx", cell_prefix="x.xlsx 'My Sheet'!")
    assert where(form) == {"applicant_name": "x.xlsx 'My Sheet'!B2"}


def test_the_cheap_not_a_label_test_never_rejects_a_label() -> None:
    for aliases in LABEL_ALIASES.values():
        for alias in aliases:
            for typed in (alias, f"1.{alias}", f"【{alias}】", f"{alias}（8桁）", f"{alias}:"):
                assert may_be_label(typed), typed
    for value in ("1ANACA0A", "1anac001", "12345678", "2026/12/22", "03-1234-5678", ""):
        assert not may_be_label(value), value


def test_heading_words_are_no_labels() -> None:
    for word in ("項目", "記入欄", "記入方法", "説明", "No.", "内容", "値"):
        assert match_label(word) is None, word


# --- hostile files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 64,
        b"\x89PNG\r\n\x1a\n" + bytes(4096),
        b"PK\x03\x04" + bytes(range(200)) * 10,
        b"%PDF-1.7\n\x00\x01\x02\xff\xfe binary",
    ],
    ids=["random", "png", "zip", "pdf"],
)
def test_binary_garbage_named_csv_is_one_clear_problem(data: bytes) -> None:
    form = parse_csv(data, "garbage.csv")
    assert values(form) == {}
    assert codes(form) == [("file.not_text", "garbage.csv")]
    assert "CSV" in form.problems[0].message_ja


def test_undecodable_byte_after_the_sniffed_prefix_names_the_row() -> None:
    good = "変更する理由,移管\n" + ("," + "x" * 100 + "\n") * 900  # 90 KB, under MAX_ROWS
    form = parse_csv(good.encode() + b",\xff\xfe\n", NAME)
    assert [p.code for p in form.problems] == ["file.not_text"]
    assert "行目" in form.problems[0].message_ja


def test_cell_over_csvs_field_limit_is_a_problem() -> None:
    data = b'reason,"' + b"x" * 200_000 + b'"\n'
    assert [p.code for p in parse_csv(data, NAME).problems] == ["file.not_text"]


def test_empty_file() -> None:
    assert [p.code for p in parse_csv(b"", NAME).problems] == ["file.no_form"]


def _measured(data: bytes) -> tuple[RawForm, int, float]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        form = parse_csv(data, "big.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return form, peak, time.perf_counter() - started


def test_50_mb_csv_is_refused_with_bounded_memory() -> None:
    row = "1ANACA0A,TYO01,山田 太郎,03-1234-5678,移管のため\r\n".encode()
    header = "廃止する利用者ID,事業所コード,申込担当者,申込担当者電話番号,変更する理由\r\n"
    data = header.encode() + row * (50 * 1024 * 1024 // len(row))
    form, peak, seconds = _measured(data)
    assert codes(form) == [("file.too_many_rows", "big.csv")]
    assert f"{MAX_ROWS:,}" in form.problems[0].message_ja
    assert peak < 10 * 1024 * 1024, peak  # the file is 50 MB; reading stopped early
    assert seconds < 5


def test_50_mb_single_line_is_refused_with_bounded_memory() -> None:
    form, peak, _ = _measured(b"a," * (25 * 1024 * 1024))
    assert codes(form) == [("file.too_large", "big.csv")]
    assert peak < 20 * 1024 * 1024, peak


def test_100000_row_csv_is_refused_with_bounded_memory() -> None:
    data = "廃止する利用者ID\n".encode() + b"".join(f",{n:08d}\n".encode() for n in range(100_000))
    form, peak, _ = _measured(data)
    assert codes(form) == [("file.too_many_rows", "big.csv")]
    assert peak < 10 * 1024 * 1024, peak


def test_100000_empty_rows_are_refused_too() -> None:
    form, peak, _ = _measured("廃止する利用者ID,1ANACA0A\n".encode() + b",,,\n" * 100_000)
    assert codes(form) == [("file.too_many_rows", "big.csv")]
    assert peak < 10 * 1024 * 1024, peak


def test_a_form_of_a_thousand_rows_is_read() -> None:
    data = "廃止する利用者ID\n".encode() + b"".join(
        f",{n:08d}\n".encode() for n in range(MAX_ROWS - 1)
    )
    form = parse_csv(data, NAME)
    assert form.problems == []
    assert len(values(form)["user_ids"].split("\n")) == MAX_ROWS - 1
