"""Read a request form from an XLSX workbook.

An XLSX is a zip archive of XML, so a hostile one can be small and expand to gigabytes. Before
openpyxl sees the bytes, the zip's central directory (a few hundred bytes, nothing inflated) is
checked: member count, declared uncompressed total, and its ratio to the compressed size.
Python's zipfile stops inflating a member at its declared size (and fails its CRC), so the
declared sizes bound what openpyxl can ever read. Macro workbooks (.xlsm, or any file holding
``xl/vbaProject.bin``), the old binary format (.xls, .xlsb) and OLE2 containers (old .xls and
password-protected workbooks share the D0CF11E0 signature) get the "please save as .xlsx or
.csv" problem. Every XML part is then read with defusedxml up to its first element: a DTD
(entity expansion, external entities) refuses the workbook before openpyxl parses anything.

The workbook is opened read-only with cached values (``data_only``): a formula's last computed
value is used, as the applicant saw it. Sheets are read row by row, capped in rows and columns.
A sheet whose cells label at least two fields holds a form (visible sheets first, hidden ones
only when no visible sheet does); two sheets with filled-in forms are refused as ambiguous
rather than guessed between. The form's rows go through the same layout reader as CSV
(:func:`form_from_grid`), with locations such as ``申込書.xlsx Sheet1!B4``. Dates stored as
dates become ISO dates (``2026-12-15``); numbers stored as numbers become their digits
(``20261215``, not ``20261215.0``).
"""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any, Final

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import iterparse as defused_iterparse
from openpyxl import load_workbook

from mailbot.parsers.form import RawForm
from mailbot.parsers.grid import (
    GridRow,
    count_labels,
    form_from_grid,
    grid_row,
    too_many_rows,
)
from mailbot.problems import Problem

MAX_UNCOMPRESSED_BYTES: Final = 20 * 1024 * 1024  # a filled form is ~30 KB inflated
MAX_COMPRESSION_RATIO: Final = 100  # XML compresses ~5-20x; bombs 1000x and more
_RATIO_CHECKED_ABOVE: Final = 1024 * 1024  # small archives cannot be bombs, whatever the ratio
MAX_MEMBERS: Final = 1_000  # a workbook has a few dozen parts
MAX_ROWS: Final = 1_000  # filled rows, as for CSV
MAX_SCAN_ROWS: Final = 65_536  # rows read, empty ones included (formatted empty ranges)
# Columns read per row: openpyxl pads each row to this width, so it must stay small. Values
# beyond column IV are not read (no form is that wide).
MAX_COLUMNS: Final = 256
_MIN_COLUMNS: Final = 32

_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_REFUSED_SUFFIXES: Final = {
    ".xlsm": "マクロ有効ブック（.xlsm）",
    ".xltm": "マクロ有効テンプレート（.xltm）",
    ".xls": "旧形式のExcelブック（.xls）",
    ".xlsb": "Excelバイナリブック（.xlsb）",
    ".ods": "OpenDocument形式（.ods）",
}


class _Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


def parse_xlsx(data: bytes, filename: str) -> RawForm:
    """The request form in an XLSX attachment, with problems; never raises."""
    try:
        _check_container(data, filename)
        return _read_workbook(data, filename)
    except _Refused as refused:
        return RawForm(filename, problems=[refused.problem])


def _check_container(data: bytes, filename: str) -> None:
    """Refuse, from the name and the zip directory alone, what must not be opened."""
    kind = _REFUSED_SUFFIXES.get(PurePath(filename.lower()).suffix)
    if kind is not None:
        raise _Refused(_save_as_xlsx(filename, kind))
    if data.startswith(_OLE2_MAGIC):
        raise _Refused(_save_as_xlsx(filename, "旧形式（.xls）またはパスワード付きのExcelブック"))
    if not data.startswith(_ZIP_MAGIC):
        raise _Refused(_broken(filename))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise _Refused(_broken(filename)) from None
    if len(members) > MAX_MEMBERS:
        raise _Refused(_unsafe(filename, f"{len(members):,}個のファイルを含む"))
    inflated = sum(member.file_size for member in members)
    packed = max(sum(member.compress_size for member in members), 1)
    if inflated > MAX_UNCOMPRESSED_BYTES or (
        inflated > _RATIO_CHECKED_ABOVE and inflated > packed * MAX_COMPRESSION_RATIO
    ):
        raise _Refused(_unsafe(filename, f"展開すると約{_megabytes(inflated)}になる"))
    names = {member.filename.lower() for member in members}
    if any(name.endswith("vbaproject.bin") for name in names):
        raise _Refused(_save_as_xlsx(filename, "マクロを含むブック"))
    if any(member.flag_bits & 0x1 for member in members):
        raise _Refused(_save_as_xlsx(filename, "パスワード付きのファイル"))
    _check_xml(data, members, filename)


def _check_xml(data: bytes, members: list[zipfile.ZipInfo], filename: str) -> None:
    """Refuse a workbook any of whose XML parts declares a DTD (entities, external references).

    Excel never writes a DTD; a DTD is how entity expansion ("billion laughs") and external
    entities (reading local files, fetching URLs) get into XML. Every member is read with
    defusedxml up to its first element, which is where a DTD has to stand: a few KB each,
    whatever the member's size, and nothing is expanded. openpyxl uses defusedxml too when it
    is installed (and ``OPENPYXL_DEFUSEDXML`` is not ``False``), but this check does not rely
    on that. A member that is not XML at all (an image) is left for openpyxl to judge.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in members:
                if member.is_dir():
                    continue
                with archive.open(member) as stream:
                    events = defused_iterparse(stream, events=("start",), forbid_dtd=True)
                    try:
                        next(iter(events), None)
                    except DefusedXmlException as refused:
                        raise _Refused(_unsafe_xml(filename, member.filename, refused)) from None
                    except ParseError:
                        continue  # not XML; openpyxl reads it or refuses the workbook
    except _DAMAGED_ZIP:
        raise _Refused(_broken(filename)) from None


# What zipfile raises reading a damaged member: a bad header or CRC, a corrupt deflate (or
# bzip2, lzma) stream, a compression method it does not know.
_DAMAGED_ZIP: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    ValueError,
    OSError,
    EOFError,
)


def _read_workbook(data: bytes, filename: str) -> RawForm:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception:  # openpyxl raises a dozen types on damaged input; all mean the same
        raise _Refused(_broken(filename)) from None
    try:
        visible = [s for s in workbook.worksheets if _is_visible(s)]
        hidden = [s for s in workbook.worksheets if not _is_visible(s)]
        # Hidden sheets (lookup lists, old copies) only when no visible sheet holds the form.
        for group in (visible, hidden):
            forms = _forms(group, filename)
            if len(forms) > 1:
                return RawForm(filename, problems=[_two_forms(filename, [t for t, _ in forms])])
            if forms:
                return forms[0][1]
    except _Refused:
        raise
    except Exception:  # a sheet's XML may be damaged where the directory was not
        raise _Refused(_broken(filename)) from None
    finally:
        workbook.close()
    return RawForm(filename, problems=[_no_form_sheet(filename)])


def _is_visible(sheet: Any) -> bool:
    return getattr(sheet, "sheet_state", "visible") == "visible"


def _forms(sheets: list[Any], filename: str) -> list[tuple[str, RawForm]]:
    """The forms these sheets hold, as (sheet title, form): sheets whose cells label at least
    two fields. Filled-in forms only, when there are any (a blank copy of the form beside the
    filled one is no second request); else the first blank one, so that its missing fields
    are reported.

    All sheets are read, not just the first with a form: a workbook with two filled-in forms
    is two requests, or an old copy beside the new one, and guessing which was meant could
    abolish the wrong IDs.
    """
    found: list[tuple[str, RawForm]] = []
    for sheet in sheets:
        rows = _sheet_rows(sheet, filename)
        if count_labels(rows) >= 2:
            title = str(sheet.title)
            prefix = f"{filename} {_sheet_ref(title)}!"
            found.append((title, form_from_grid(rows, source=filename, cell_prefix=prefix)))
    filled = [(title, form) for title, form in found if _is_filled(form)]
    return filled or found[:1]


def _is_filled(form: RawForm) -> bool:
    return any(raw.value.strip() for raw in form.fields.values())


def _sheet_rows(sheet: Any, filename: str) -> list[GridRow]:
    rows: list[GridRow] = []
    for number, values in _numbered(sheet):
        if number > MAX_SCAN_ROWS:
            raise _Refused(too_many_rows(filename, MAX_SCAN_ROWS))
        row = grid_row(number, (cell_text(value) for value in values))
        if row is None:
            continue
        if len(rows) >= MAX_ROWS:
            raise _Refused(too_many_rows(filename, MAX_ROWS))
        rows.append(row)
    return rows


def _numbered(sheet: Any) -> Iterator[tuple[int, tuple[object, ...]]]:
    # max_row one past the cap: reaching it is the signal; openpyxl stops parsing there.
    # openpyxl pads every row to max_col, so it is the sheet's recorded width when that is
    # narrower than the cap, but never under 32 columns: some writers record "A1" whatever the
    # sheet holds, and a form is never wider than that.
    recorded = _positive(sheet.max_column) or MAX_COLUMNS
    width = min(max(recorded, _MIN_COLUMNS), MAX_COLUMNS)
    values = sheet.iter_rows(max_row=MAX_SCAN_ROWS + 1, max_col=width, values_only=True)
    yield from enumerate(values, start=1)


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def cell_text(value: object) -> str:
    """A cell's value as the text a person would read in it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores every number as a float: 20261215.0 → 20261215
    return str(value)


def _sheet_ref(title: str) -> str:
    """A sheet name as Excel writes it in a reference: quoted when it has spaces or marks."""
    plain = all(char.isalnum() or char == "_" for char in title)
    return title if plain else "'" + title.replace("'", "''") + "'"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MB"


# --- problems -------------------------------------------------------------------------------


def _save_as_xlsx(filename: str, kind: str) -> Problem:
    return Problem(
        code="file.format_refused",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」は{kind}のため読み取れません。Excelで開き（パスワードがあれば解除し）、"
            "「名前を付けて保存」で「Excel ブック（*.xlsx）」または「CSV UTF-8（コンマ区切り）"
            "（*.csv）」を選んで保存し直し、添付して送り直してください。"
        ),
        message_en=(
            f'"{filename}" cannot be read (macro-enabled, old .xls, binary or password-protected '
            'workbook). Open it in Excel (remove any password), "Save As" "Excel Workbook '
            '(*.xlsx)" or "CSV UTF-8 (Comma delimited) (*.csv)", and attach that file.'
        ),
        location=filename,
    )


def _broken(filename: str) -> Problem:
    return Problem(
        code="file.broken",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」をExcelブック（.xlsx）として開けません。ファイルが壊れているか、"
            "別の形式のファイルです。Excelで開けることを確かめ、.xlsx または .csv で保存し直して"
            "送ってください。"
        ),
        message_en=(
            f'"{filename}" cannot be opened as an Excel workbook (.xlsx): it is damaged or of '
            "another format. Check that Excel opens it, save it as .xlsx or .csv, and send it "
            "again."
        ),
        location=filename,
    )


def _unsafe(filename: str, what: str) -> Problem:
    limit = _megabytes(MAX_UNCOMPRESSED_BYTES)
    return Problem(
        code="file.unsafe_archive",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」は{what}ため、安全のため開かずに処理を中止しました（展開後の上限 "
            f"{limit}）。申込書のシートだけを新しいブックにコピーし、.xlsx または .csv で保存して"
            "送り直してください。"
        ),
        message_en=(
            f'"{filename}" was not opened: its archive is out of proportion (limit {limit} '
            "uncompressed). Copy the form sheet into a new workbook, save it as .xlsx or .csv, "
            "and send it again."
        ),
        location=filename,
    )


def _unsafe_xml(filename: str, member: str, refused: DefusedXmlException) -> Problem:
    return Problem(
        code="file.unsafe_xml",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」の中のXML（{member}）に、Excelが書くことのない定義（DTD・エンティティ）"
            "が含まれているため、安全のため開かずに処理を中止しました。Excelで開いて"
            "「名前を付けて保存」で .xlsx または .csv に保存し直し、送り直してください。"
        ),
        message_en=(
            f'"{filename}" was not opened: its XML part {member} holds a document type '
            f"definition or entity ({type(refused).__name__}), which Excel never writes and "
            "which can be used to attack the reader. Open it in Excel, save it again as .xlsx "
            "or .csv, and send that file."
        ),
        location=filename,
    )


def _two_forms(filename: str, titles: list[str]) -> Problem:
    names_ja = "」「".join(titles)
    names_en = '", "'.join(titles)
    return Problem(
        code="file.two_forms",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」の複数のシート（「{names_ja}」）に記入済みの申込書があり、どれが"
            "お申込みか判断できません。1つのシートにまとめるか、1通のメールに1つの申込書で"
            "お送りください。"
        ),
        message_en=(
            f'Several sheets of "{filename}" ("{names_en}") hold a filled-in request form, so '
            "we cannot tell which one you mean. Put the request on one sheet, or send one form "
            "per mail."
        ),
        location=filename,
    )


def _no_form_sheet(filename: str) -> Problem:
    return Problem(
        code="file.no_form",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」のどのシートにも申込書の項目名が見つかりません。A列に項目名、B列に値を"
            "書くか、1行目に項目名を並べて2行目以降に値を書いてください。返信に添付した申込書の"
            "様式もご利用いただけます。"
        ),
        message_en=(
            f'No sheet of "{filename}" holds the labels of the request form. Put the labels in '
            "column A and the values in column B, or the labels in the first row and the values "
            "below. The blank form attached to our reply has the layout."
        ),
        location=filename,
    )
