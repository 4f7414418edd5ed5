"""Read a request form from a CSV file.

A CSV is decoded lazily, a chunk at a time, and read row by row with hard limits, so a 50 MB
file or one with 100,000 rows is refused with a problem after reading only what the limits
allow: memory stays bounded whatever the attachment holds. Encodings (docs/japanese-mail.md):
UTF-8 with or without BOM, CP932 (Japanese Excel's "CSV"), UTF-16 with BOM (Excel's "Unicode
text", tab-separated), and UTF-16 without BOM when its zero bytes give it away. The delimiter
is a tab or a comma, sniffed from the first lines.

The rows then go through :func:`mailbot.parsers.grid.form_from_grid`, as an XLSX sheet's do.
Nothing here raises on bad input: a file that is no CSV text gives one problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import Final

from mailbot.parsers.form import RawForm
from mailbot.parsers.grid import GridRow, form_from_grid, grid_row, too_many_rows
from mailbot.problems import Problem

# A form has a dozen fields and at most a few hundred IDs: 1,000 filled rows is generous, and
# anything beyond is not a form. Empty rows are cheap but still bounded (Excel may export a
# formatted range of ",,,," lines).
MAX_ROWS: Final = 1_000
MAX_RECORDS: Final = 65_536
# Characters decoded before giving up: a 1,000-row table of a dozen short columns is well
# under this, and it bounds memory even when the file is one endless line.
MAX_TEXT_CHARS: Final = 2_000_000

_SNIFF_BYTES: Final = 64 * 1024
_CHUNK_CHARS: Final = 64 * 1024


# --- decoding -------------------------------------------------------------------------------


def sniff_encoding(data: bytes) -> str | None:
    """The codec to read ``data`` with, judged from a BOM or the first 64 KB; None if no text.

    Order of docs/japanese-mail.md: a BOM decides; then UTF-8 (which CP932 text almost never
    passes); then CP932, or EUC-JP where CP932 would read it as half-width katakana. Zero bytes
    mean UTF-16 (only if they sit in every other byte) or a binary file. A later undecodable
    byte is caught while reading, with its row.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    prefix = data[:_SNIFF_BYTES]
    if b"\x00" in prefix:
        return _utf16_without_bom(prefix)
    final = len(data) <= _SNIFF_BYTES
    if _reads_as("utf-8", prefix, final) is not None:
        return "utf-8"
    as_cp932 = _reads_as("cp932", prefix, final)
    # EUC-JP (old Unix and some web systems) is never valid CP932 once a kanji's first byte is
    # 0x81-0x9F, and where its bytes are, CP932 reads them as half-width katakana (山田 as
    # ｻｳﾅﾄ). CP932 text with kanji, as every form's labels are, is never valid EUC-JP. So:
    # EUC-JP when CP932 fails, or reads half-width katakana, and EUC-JP reads it all.
    if (as_cp932 is None or _HALF_WIDTH_KANA.search(as_cp932)) and _reads_as(
        "euc-jp", prefix, final
    ) is not None:
        return "euc-jp"
    return "cp932" if as_cp932 is not None else None


_HALF_WIDTH_KANA = re.compile("[\uff61-\uff9f]")


def _reads_as(codec: str, prefix: bytes, final: bool) -> str | None:
    try:
        return str(codecs.getincrementaldecoder(codec)().decode(prefix, final))
    except UnicodeDecodeError:
        return None


def _utf16_without_bom(prefix: bytes) -> str | None:
    # Mostly-ASCII UTF-16 has a zero in every other byte; binary files have them anywhere.
    pairs = max(len(prefix) // 2, 1)
    odd = prefix[1::2].count(0) / pairs
    even = prefix[0::2].count(0) / pairs
    if odd > 0.3 and even < 0.02:
        return "utf-16-le"
    if even > 0.3 and odd < 0.02:
        return "utf-16-be"
    return None


# Control characters that text files do not contain (tab, CR, LF, VT, FF allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def looks_like_text(sample: str) -> bool:
    """False for decoded bytes that are really binary: any NUL, or more than 1% controls."""
    if "\x00" in sample:
        return False
    return len(_CONTROL.findall(sample)) <= len(sample) // 100


def decode_text(data: bytes) -> str | None:
    """The whole of ``data`` as text with the sniffed codec, or None if it is no text.

    For small files only (a .txt attachment under the size limit); CSV reading is lazy.
    """
    codec = sniff_encoding(data)
    if codec is None:
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None
    return text if looks_like_text(text[:_CHUNK_CHARS]) else None


class _TooLarge(Exception):
    """More text than MAX_TEXT_CHARS."""


# A line and its ending. Only CR and LF end lines: csv ends a record at the end of each string
# it is given, so splitting on U+2028 (as str.splitlines does) would cut records.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _lines(stream: io.TextIOBase, first: str) -> Iterator[str]:
    pending = ""
    chunk = first
    total = 0
    while chunk:
        total += len(chunk)
        if total > MAX_TEXT_CHARS:
            raise _TooLarge
        pending += chunk
        # Up to the last line ending; a CR at the very end may be half of a CRLF split between
        # two chunks, so it waits. Matching only text that ends with a line ending keeps the
        # regex linear: a long line without one is never scanned over and over.
        end = max(pending.rfind("\n"), pending.rfind("\r", 0, len(pending) - 1)) + 1
        if end:
            yield from (match.group(0) for match in _LINE.finditer(pending, 0, end))
            pending = pending[end:]
        chunk = stream.read(_CHUNK_CHARS)
    if pending:
        yield pending


def _delimiter(sample: str) -> str:
    """Tab when the first lines hold tabs at least as often as commas (Excel's Unicode text
    and pasted tables), else comma."""
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    tabs = sum("\t" in line for line in lines)
    commas = sum("," in line for line in lines)
    return "\t" if tabs and tabs >= commas else ","


# --- reading the rows ---------------------------------------------------------------------------


def read_csv_rows(data: bytes, filename: str) -> list[GridRow] | Problem:
    """The non-empty rows of a CSV file, or the one problem that stops reading it."""
    codec = sniff_encoding(data)
    if codec is None:
        return _not_text(filename)
    stream = io.TextIOWrapper(io.BytesIO(data), encoding=codec, errors="strict", newline="")
    rows: list[GridRow] = []
    number = 0
    try:
        first = stream.read(_CHUNK_CHARS)
        if not looks_like_text(first):
            return _not_text(filename)
        reader = csv.reader(_lines(stream, first), delimiter=_delimiter(first))
        for number, record in enumerate(reader, start=1):
            if number > MAX_RECORDS:
                return too_many_rows(filename, MAX_RECORDS)
            row = grid_row(number, record)
            if row is None:
                continue
            if len(rows) >= MAX_ROWS:
                return too_many_rows(filename, MAX_ROWS)
            rows.append(row)
    except UnicodeDecodeError:
        return _undecodable(filename, number + 1)
    except _TooLarge:
        return _too_large(filename)
    except csv.Error as error:  # a NUL byte, a cell over csv's 128 KB field limit
        return _bad_csv(filename, number + 1, str(error))
    return rows


def parse_csv(data: bytes, filename: str) -> RawForm:
    """The request form in a CSV attachment, with problems; never raises."""
    rows = read_csv_rows(data, filename)
    if isinstance(rows, Problem):
        return RawForm(filename, problems=[rows])
    return form_from_grid(rows, source=filename, cell_prefix=f"{filename} ")


# --- problems -------------------------------------------------------------------------------

_RESAVE_JA = (
    "Excelで開き「名前を付けて保存」で「CSV UTF-8（コンマ区切り）」を選んで保存し直すか、"
    "Excelファイル（.xlsx）のまま添付して送り直してください。"
)
_RESAVE_EN = (
    'Open it in Excel and "Save As" "CSV UTF-8 (Comma delimited)", or attach the Excel file '
    "(.xlsx) as it is, and send it again."
)


def _not_text(filename: str) -> Problem:
    return Problem(
        code="file.not_text",
        field=None,
        value=filename,
        message_ja=f"「{filename}」はCSV（テキスト）ファイルとして読めません。{_RESAVE_JA}",
        message_en=f'"{filename}" is not a CSV text file. {_RESAVE_EN}',
        location=filename,
    )


def _undecodable(filename: str, row: int) -> Problem:
    return Problem(
        code="file.not_text",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」の{row}行目付近に、文字コード（UTF-8 / Shift_JIS）として読めない"
            f"文字があります。{_RESAVE_JA}"
        ),
        message_en=(
            f'"{filename}" has bytes near row {row} that are not valid text in its encoding '
            f"(UTF-8 / Shift_JIS). {_RESAVE_EN}"
        ),
        location=f"{filename} {row}行目",
    )


def _too_large(filename: str) -> Problem:
    return Problem(
        code="file.too_large",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」は申込書として大きすぎます（上限{MAX_TEXT_CHARS:,}文字）。"
            "申込書以外の内容を削除して送り直してください。"
        ),
        message_en=(
            f'"{filename}" is too large for a request form (limit {MAX_TEXT_CHARS:,} '
            "characters). Remove everything but the form and send it again."
        ),
        location=filename,
    )


def _bad_csv(filename: str, row: int, detail: str) -> Problem:
    return Problem(
        code="file.not_text",
        field=None,
        value=filename,
        message_ja=f"「{filename}」の{row}行目をCSVとして読めません（{detail}）。{_RESAVE_JA}",
        message_en=f'Row {row} of "{filename}" is not valid CSV ({detail}). {_RESAVE_EN}',
        location=f"{filename} {row}行目",
    )
