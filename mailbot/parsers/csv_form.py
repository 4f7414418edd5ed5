"""Read a request form from a CSV file (and the spreadsheet layouts that XLSX shares).

A CSV is decoded lazily, a chunk at a time, and read row by row with hard limits, so a 50 MB
file or one with 100,000 rows is refused with a problem after reading only what the limits
allow: memory stays bounded whatever the attachment holds. Encodings (docs/japanese-mail.md):
UTF-8 with or without BOM, CP932 (Japanese Excel's "CSV"), UTF-16 with BOM (Excel's "Unicode
text", tab-separated), and UTF-16 without BOM when its zero bytes give it away. The delimiter
is a tab or a comma, sniffed from the first lines.

The rows then go through :func:`form_from_grid`, which :mod:`mailbot.parsers.xlsx_form` uses
too, so a CSV and an XLSX of the same form give the same :class:`RawForm`. It knows the two
layouts of docs/domain.md#csv-and-xlsx, and their mix:

* **vertical**: a label in the label column (usually A), its value(s) in the cells to its
  right; a row whose label cell is empty continues the list (or free-text) field above it.
  A row of column headings such as ``項目 | 記入欄 | 記入方法`` is skipped, and a column
  headed ``記入方法``/``説明``/``注意`` (the blank form's notes) is never read as values.
* **table**: a header row of labels (at least two fields), then one row per user ID; other
  fields filled in the first row or repeated identically. A repeated value that differs is
  a problem naming both cells. A vertical block may sit above the table (a common Excel
  form: contact details on top, the ID table below).
* **mark table** (the pre-filled form of the contract reply, like the guide's screen ⑦ with
  its 「識別番号の廃止」 check column): a header with 「廃止する利用者ID」 and a 「廃止」 column,
  one row per ID the office holds. Only rows whose 「廃止」 cell holds a mark (○ ✓ 1 x and the
  like, see ``MARKS``) are read; an empty cell (or ``-``, ``0``, ``no``) keeps the ID; anything
  else (``×``, which many read as "no") is a problem naming the cell rather than a guess.
  Its information columns (利用者コード, 識別番号, 区分, 状態) are not read.

Values are kept as typed, only trimmed (no NFKC: ㈱ ① 髙 stay), and every field and problem
carries its cell (``申込書.csv B4``). Rows above the first label (a title, an instruction line)
are not read; after it, a cell that looks like a label but is none is reported, never
dropped. Nothing here raises on bad input: a file that is no CSV text gives one problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from mailbot.parsers.form import RawField, RawForm
from mailbot.parsers.labels import (
    CANONICAL_LABEL_JA,
    LIST_FIELDS,
    MULTILINE_FIELDS,
    accepted_labels_ja,
    label_key,
    match_label,
    strip_label_decorations,
    unknown_label_problem,
)
from mailbot.problems import Problem

# A form has a dozen fields and at most a few hundred IDs: 1,000 filled rows is generous, and
# anything beyond is not a form. Empty rows are cheap but still bounded (Excel may export a
# formatted range of ",,,," lines).
MAX_ROWS: Final = 1_000
MAX_RECORDS: Final = 65_536
# Characters decoded before giving up: a 1,000-row table of a dozen short columns is well
# under this, and it bounds memory even when the file is one endless line.
MAX_TEXT_CHARS: Final = 2_000_000
# Longer cells are never labels: saves matching every long value against the label table.
_MAX_LABEL_CELL: Final = 80
# Cells that are never labels, told apart cheaply because a form is mostly made of them: digits
# with date/phone punctuation, and IDs or codes (ASCII letters with a digit after a letter).
# No label has a digit: the only digits a label cell carries are leading numbering ("1.") or
# notes in brackets, and neither leaves such a string.
_NEVER_LABEL: Final = re.compile(r"[0-9][0-9\-/.: ]*|[0-9]*[A-Za-z][0-9A-Za-z]*[0-9][0-9A-Za-z]*")


def may_be_label(text: str) -> bool:
    """False for cells that cannot be labels (empty, long, a number, an ID); else ask
    :func:`match_label`."""
    return bool(text) and len(text) <= _MAX_LABEL_CELL and not _NEVER_LABEL.fullmatch(text)


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


# --- the grid -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRow:
    """One non-empty row of a sheet: its 1-based number and its trimmed cells from column A
    (trailing empty cells dropped)."""

    number: int
    cells: tuple[str, ...]


def grid_row(number: int, cells: Iterable[str]) -> GridRow | None:
    """The row with every cell trimmed (U+3000 too), or None when it is all empty."""
    trimmed = [cell.strip() for cell in cells]
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return GridRow(number, tuple(trimmed)) if trimmed else None


def column_letter(index: int) -> str:
    """Spreadsheet column name of a 0-based index: 0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


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


# --- words that head columns but are no labels ----------------------------------------------


def _word_key(text: str) -> str:
    return label_key(strip_label_decorations(text)) or label_key(text)


# "項目 | 記入欄 | 記入方法", "item | value": a heading row of a vertical form, skipped.
_HEADING_WORDS: Final = frozenset(
    _word_key(word)
    for word in (
        "項目", "項目名", "内容", "値", "記入欄", "入力欄", "回答", "記入内容", "入力内容",
        "item", "value", "field", "label", "key",
    )
)  # fmt: skip
# A column of explanations (the blank form's column C): never values.
_NOTE_WORDS: Final = frozenset(
    _word_key(word)
    for word in (
        "記入方法", "記入例", "入力例", "入力方法", "説明", "注意", "注意事項", "記入上の注意",
        "書き方", "ヒント", "hint", "help", "example", "format", "instructions", "description",
    )
)  # fmt: skip
# A row-number column of a table: ignored.
_ROW_NUMBER_WORDS: Final = frozenset(
    _word_key(word) for word in ("No", "No.", "番号", "連番", "項番", "#", "行", "№")
)


# The check column of the pre-filled form, and what people write into it.
_MARK_HEADINGS: Final = frozenset(
    _word_key(word)
    for word in (
        "廃止", "廃止する", "廃止対象", "廃止チェック", "識別番号の廃止", "利用者IDの廃止",
        "廃止印", "選択", "チェック", "abolish", "mark",
    )
)  # fmt: skip
# Columns of a mark table that only inform (what mailbot wrote beside each ID): not read.
_INFO_HEADINGS: Final = frozenset(
    _word_key(word)
    for word in (
        "利用者コード", "識別番号", "区分", "種別", "利用区分", "状態", "user code", "ident",
        "network", "status",
    )
)  # fmt: skip
# After NFKC and case folding. 1 and x because Excel users type them; ✓/レ as on the guide's
# screen ⑦ (レ点). Not × (batsu), which in Japanese forms usually means "no": it is unclear.
MARKS: Final = frozenset(
    {"○", "◯", "〇", "●", "◎", "✓", "✔", "☑", "✅", "レ", "1", "x", "v", "*", "yes", "y",
     "true", "廃止", "する"}
)  # fmt: skip
UNMARKED: Final = frozenset({"", "-", "ー", "0", "no", "n", "false", "しない", "残す"})


def mark_of(text: str) -> bool | None:
    """True for a mark, False for an empty or "no" cell, None when it is neither."""
    key = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).casefold())
    if key in MARKS:
        return True
    if key in UNMARKED:
        return False
    return None


def is_mark_heading(text: str) -> bool:
    return bool(text) and _word_key(text) in _MARK_HEADINGS


def is_note_word(text: str) -> bool:
    return _word_key(text) in _NOTE_WORDS


def _ignorable_heading(text: str) -> bool:
    key = _word_key(text)
    return key in _HEADING_WORDS or key in _NOTE_WORDS or key in _ROW_NUMBER_WORDS


# --- collecting fields ----------------------------------------------------------------------


@dataclass
class _Entry:
    """One occurrence of a field: its values in order, and where the first one stands."""

    name: str
    location: str
    values: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)  # each list value's own cell


class FieldCollector:
    """Fields found in one file, with the rule every format shares for a field given twice.

    A list field given twice is one list. Another field given twice must have the same value
    (ignoring width, case and spaces); a different one is a ``form.duplicate_field`` problem
    naming both places, reported once per field. An empty occurrence never hides a value.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.fields: dict[str, RawField] = {}
        self.problems: list[Problem] = []
        self._conflicted: set[str] = set()

    def add(
        self,
        name: str,
        value: str,
        location: str,
        line_locations: tuple[str | None, ...] | None = None,
    ) -> None:
        lines = line_locations or (location,) * (value.count("\n") + 1)
        new = RawField(name, value, location, lines)
        old = self.fields.get(name)
        if old is None or (not old.value and value):
            self.fields[name] = new
        elif name in LIST_FIELDS:
            if value:
                merged = f"{old.value}\n{value}"
                self.fields[name] = RawField(name, merged, old.location, old.line_locations + lines)
        elif value and name not in self._conflicted and comparable(value) != comparable(old.value):
            self._conflicted.add(name)
            self.problems.append(duplicate_problem(old, new))

    def form(self, extra_problems: Sequence[Problem] = ()) -> RawForm:
        return RawForm(self.source, dict(self.fields), [*self.problems, *extra_problems])


def comparable(value: str) -> str:
    """Values that differ only in width, case or spacing are the same value given twice."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value).casefold())


# --- reading the layouts --------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    header: GridRow
    rows: tuple[GridRow, ...]


class _GridReader:
    """Reads the rows of one sheet into fields: table segments first found, the rest vertical."""

    def __init__(self, rows: Sequence[GridRow], source: str, cell_prefix: str) -> None:
        self.rows = rows
        self.prefix = cell_prefix
        self.fields = FieldCollector(source)
        self.problems: list[tuple[int, int, Problem]] = []  # (row, column, problem)
        self._labels: dict[tuple[int, int], str | None] = {}
        self._unclear_marks = 0

    def cell(self, row: int, column: int) -> str:
        return f"{self.prefix}{column_letter(column)}{row}"

    def label(self, row: GridRow, column: int) -> str | None:
        """The field the cell labels (memoised: layouts look at the same cells twice)."""
        key = (row.number, column)
        if key not in self._labels:
            text = row.cells[column] if column < len(row.cells) else ""
            self._labels[key] = match_label(text) if may_be_label(text) else None
        return self._labels[key]

    def report(self, row: int, column: int, problem: Problem) -> None:
        self.problems.append((row, column, problem))

    # -- layout detection

    def _row_fields(self, row: GridRow) -> dict[int, str]:
        found = {col: self.label(row, col) for col in range(len(row.cells))}
        return {col: name for col, name in found.items() if name is not None}

    def segments(self) -> list[GridRow | _Table]:
        """The rows in order, each table (header and its data rows) grouped as one item."""
        out: list[GridRow | _Table] = []
        index = 0
        seen_label = False
        while index < len(self.rows):
            row = self.rows[index]
            labelled = self._row_fields(row)
            if len(set(labelled.values())) >= 2 or self._mark_column(row, labelled) is not None:
                first = min(labelled)
                end = index + 1
                while end < len(self.rows) and self.label(self.rows[end], first) is None:
                    end += 1
                # A header row has data under it, unless it opens the sheet (a blank table);
                # "理由 | その他" at the end of a vertical form is a row whose value is a word
                # that happens to be a label.
                if end > index + 1 or (end == len(self.rows) and not seen_label):
                    out.append(_Table(row, tuple(self.rows[index + 1 : end])))
                    index = end
                    seen_label = True
                    continue
            seen_label = seen_label or bool(labelled)
            out.append(row)
            index += 1
        return out

    def _mark_column(self, row: GridRow, labelled: dict[int, str]) -> int | None:
        """The 「廃止」 column of a header row that also labels 「廃止する利用者ID」, if any."""
        if "user_ids" not in labelled.values():
            return None
        return next(
            (
                col
                for col, text in enumerate(row.cells)
                if col not in labelled and is_mark_heading(text)
            ),
            None,
        )

    def label_column(self, rows: Iterable[GridRow]) -> int | None:
        """The column where vertical labels stand: where most rows have their first label
        (ties: the leftmost). Cells left of it are numbering (``1.``, ``①``) and ignored."""
        columns: Counter[int] = Counter()
        for row in rows:
            column = next((c for c in range(len(row.cells)) if self.label(row, c)), None)
            if column is not None:
                columns[column] += 1
        if not columns:
            return None
        return min(columns, key=lambda column: (-columns[column], column))

    # -- reading

    def run(self) -> RawForm:
        segments = self.segments()
        vertical = _Vertical(self, self.label_column(s for s in segments if isinstance(s, GridRow)))
        for segment in segments:
            if isinstance(segment, _Table):
                vertical.close()
                self._read_table(segment)
            else:
                vertical.read(segment)
        vertical.close()
        if not self.fields.fields:
            return RawForm(self.fields.source, problems=[_no_form(self.fields.source)])
        ordered = [p for _, _, p in sorted(self.problems, key=lambda item: item[:2])]
        return self.fields.form(ordered)

    def _read_table(self, table: _Table) -> None:
        header = table.header
        columns: dict[int, str] = {}
        mark = self._mark_column(header, self._row_fields(header))
        for col, text in enumerate(header.cells):
            if not text or col == mark:
                continue
            name = self.label(header, col)
            if name is not None:
                columns[col] = name
            elif not _ignorable_heading(text) and not (
                mark is not None and _word_key(text) in _INFO_HEADINGS
            ):
                self.report(
                    header.number, col, unknown_label_problem(text, self.cell(header.number, col))
                )
        below = header.number + 1
        for col, name in columns.items():  # a column left empty is still the field, found empty
            self.fields.add(name, "", self.cell(below, col))
        ignored = {c for c, t in enumerate(header.cells) if t and c not in columns}
        marked = 0
        for row in table.rows:
            filled = [(c, t) for c, t in enumerate(row.cells) if t]
            if len(filled) == 1 and filled[0][1].startswith("※"):
                continue  # a note under the table
            if mark is not None:
                if not self._row_is_marked(row, mark):
                    continue  # an ID the office keeps (or an unclear mark, reported)
                marked += 1
            for col, text in filled:
                if col in columns:
                    self.fields.add(columns[col], text, self.cell(row.number, col))
                elif col not in ignored and not text.isdigit():  # digits: row numbers
                    self.report(row.number, col, _unlabelled(text, self.cell(row.number, col)))
        if mark is not None and not marked and not self._unclear_marks:
            where = self.cell(header.number, mark)
            self.report(header.number, mark, _nothing_marked(where))

    def _row_is_marked(self, row: GridRow, mark: int) -> bool:
        text = row.cells[mark] if mark < len(row.cells) else ""
        found = mark_of(text)
        if found is None:
            self._unclear_marks += 1
            self.report(row.number, mark, _unclear_mark(text, self.cell(row.number, mark)))
        return bool(found)


# An ID or user code as people type it (any width, with separators): never a heading.
_LIST_ITEM = re.compile(r"[0-9A-Za-z][0-9A-Za-z\s,、;/・\-]*")


class _Vertical:
    """The vertical layout's state: the label whose values are being read."""

    def __init__(self, grid: _GridReader, label_column: int | None) -> None:
        self.grid = grid
        self.column = label_column
        self.notes: set[int] = set()
        self.open: _Entry | None = None
        self.started = False  # a label has been seen: from now on, report what is not one

    def read(self, row: GridRow) -> None:
        if self.column is None:
            return  # no vertical label anywhere: title or notes above a table
        column = self.column
        head = row.cells[column] if column < len(row.cells) else ""
        values = [
            (c, text)
            for c, text in enumerate(row.cells)
            if c > column and text and c not in self.notes
        ]
        if head:
            self._labelled_row(row, head, values)
        elif values:
            self._continuation(row, values)

    def _labelled_row(self, row: GridRow, head: str, values: list[tuple[int, str]]) -> None:
        grid, column = self.grid, self.column
        assert column is not None
        name = grid.label(row, column)
        if name is None and not values and self._list_item(head):
            # IDs listed down the label column under their label: values, not headings.
            self._take(row, [(column, head)])
            return
        self.close()
        if name is not None:
            self.started = True
            where = grid.cell(row.number, values[0][0] if values else column + 1)
            self.open = _Entry(name, where)
            self._take(row, values)
        elif all(_ignorable_heading(text) for text in row.cells if text):
            # "項目 | 記入欄 | 記入方法": remember which columns hold notes.
            self.notes = {c for c, text in enumerate(row.cells) if text and is_note_word(text)}
        elif self.started and values and not head.startswith("※"):
            where = grid.cell(row.number, column)
            grid.report(row.number, column, unknown_label_problem(head, where))

    def _list_item(self, text: str) -> bool:
        current = self.open
        in_list = current is not None and current.name in LIST_FIELDS
        return in_list and bool(_LIST_ITEM.fullmatch(unicodedata.normalize("NFKC", text)))

    def _continuation(self, row: GridRow, values: list[tuple[int, str]]) -> None:
        current = self.open
        if current is None:
            if self.started:
                for col, text in values:
                    where = self.grid.cell(row.number, col)
                    self.grid.report(row.number, col, _unlabelled(text, where))
            return
        self._take(row, values)

    def _take(self, row: GridRow, values: list[tuple[int, str]]) -> None:
        current = self.open
        assert current is not None
        if not values:
            return
        if not current.values:
            current.location = self.grid.cell(row.number, values[0][0])
        if current.name in LIST_FIELDS:
            current.values.extend(text for _, text in values)
            current.cells.extend(self.grid.cell(row.number, col) for col, _ in values)
            return
        # A single value (or, for free text, one more line) per row, and a single-value field
        # takes one row only.
        if current.values and current.name not in MULTILINE_FIELDS:
            extra = values
        else:
            current.values.append(values[0][1])
            extra = values[1:]
        if extra:
            cells = [self.grid.cell(row.number, col) for col, _ in extra]
            problem = _extra_values(current.name, [text for _, text in extra], cells)
            self.grid.report(row.number, extra[0][0], problem)

    def close(self) -> None:
        current, self.open = self.open, None
        if current is not None:
            self.grid.fields.add(
                current.name,
                "\n".join(current.values),
                current.location,
                tuple(current.cells) or None,
            )


def form_from_grid(rows: Sequence[GridRow], *, source: str, cell_prefix: str) -> RawForm:
    """The request form in a sheet's non-empty rows, in either layout or both.

    ``cell_prefix`` goes before cell names in locations: ``"申込書.csv "`` gives
    ``申込書.csv B4``, ``"申込書.xlsx Sheet1!"`` gives ``申込書.xlsx Sheet1!B4``.
    A sheet without any label gives one ``file.no_form`` problem.
    """
    return _GridReader(rows, source, cell_prefix).run()


def count_labels(rows: Iterable[GridRow], enough: int = 2) -> int:
    """How many different fields the rows label, counting up to ``enough`` (then stopping:
    deciding whether a sheet holds a form should not cost a full read)."""
    names: set[str] = set()
    for row in rows:
        for text in row.cells:
            if may_be_label(text) and (name := match_label(text)):
                names.add(name)
                if len(names) >= enough:
                    return len(names)
    return len(names)


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


def too_many_rows(filename: str, limit: int) -> Problem:
    """The file has more rows than a form can have; shared with the XLSX reader."""
    return Problem(
        code="file.too_many_rows",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」の行数が上限（{limit:,}行）を超えています。申込書以外の行を削除するか、"
            "申込を複数のメールに分けて送ってください。"
        ),
        message_en=(
            f'"{filename}" has more than {limit:,} rows. Remove the rows that are not part of '
            "the form, or split the request over several mails."
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


def _no_form(source: str) -> Problem:
    return Problem(
        code="file.no_form",
        field=None,
        value=source,
        message_ja=(
            f"「{source}」に申込書の項目名が見つかりません。A列に項目名（{accepted_labels_ja()}）、"
            "B列に値を書くか、1行目に項目名を並べて2行目以降に値を書いてください。"
            "返信に添付した申込書の様式もご利用いただけます。"
        ),
        message_en=(
            f'"{source}" holds no label of the request form. Put the labels in column A and '
            "the values in column B, or the labels in the first row and the values below. The "
            "blank form attached to our reply has the layout."
        ),
        location=source,
    )


def duplicate_problem(first: RawField, second: RawField) -> Problem:
    """A field given twice with different values, naming both places."""
    label = CANONICAL_LABEL_JA.get(first.name, first.name)
    return Problem(
        code="form.duplicate_field",
        field=first.name,
        value=second.value,
        message_ja=(
            f"「{label}」が2か所に異なる値で書かれています（{first.location}:「{first.value}」、"
            f"{second.location}:「{second.value}」）。1つにそろえてください。"
        ),
        message_en=(
            f'"{first.name}" is given twice with different values ({first.location}: '
            f'"{first.value}", {second.location}: "{second.value}"). Keep only one.'
        ),
        location=second.location,
    )


def _extra_values(name: str, values: list[str], cells: list[str]) -> Problem:
    label = CANONICAL_LABEL_JA.get(name, name)
    shown = "、".join(f"「{value}」" for value in values)
    where = "、".join(cells)
    return Problem(
        code="form.extra_value",
        field=name,
        value=values[0],
        message_ja=(
            f"「{label}」に書ける値は1つです。{where}の{shown}はどの項目の値か分かりません。"
            "1つのセルにまとめるか、不要なセルを空にしてください。"
        ),
        message_en=(
            f'"{name}" takes a single value; {", ".join(values)} ({", ".join(cells)}) belong '
            "to no label. Put the value in one cell or empty the others."
        ),
        location=cells[0],
    )


def _unclear_mark(text: str, location: str) -> Problem:
    return Problem(
        code="form.unclear_mark",
        field="user_ids",
        value=text,
        message_ja=(
            f"{location}の「{text}」は「廃止」欄の印として読み取れません。廃止する利用者IDの行には"
            "○を記入し、廃止しない行は空欄にしてください。"
        ),
        message_en=(
            f'"{text}" ({location}) is not a mark we can read in the 廃止 (abolish) column. Put '
            "○ (or x, 1, ✓) on the rows of the user IDs to abolish and leave the others empty."
        ),
        location=location,
    )


def _nothing_marked(location: str) -> Problem:
    return Problem(
        code="user_ids.nothing_marked",
        field="user_ids",
        value=None,
        message_ja=(
            "「廃止」欄に印のある利用者IDがありません。廃止する利用者IDの行の「廃止」欄に○を"
            "記入してください。"
        ),
        message_en=(
            "No user ID is marked in the 廃止 (abolish) column. Put ○ (or x, 1, ✓) on the rows "
            "of the user IDs to abolish."
        ),
        location=location,
    )


def _unlabelled(text: str, location: str) -> Problem:
    return Problem(
        code="form.unlabelled_value",
        field=None,
        value=text,
        message_ja=(
            f"{location}の「{text}」に項目名がありません。項目名の右（または下）に書くか、"
            "セルを空にしてください。"
        ),
        message_en=(
            f'"{text}" ({location}) is under no label. Put it next to (or below) its label, '
            "or empty the cell."
        ),
        location=location,
    )
