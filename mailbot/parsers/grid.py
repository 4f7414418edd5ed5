"""The sheet a form is read from, whatever the file: CSV and XLSX give their non-empty rows
(:class:`GridRow`) and :func:`form_from_grid` reads the form in them, so a CSV and an XLSX of
the same form give the same :class:`RawForm`. It knows the two layouts of
docs/domain.md#csv-and-xlsx, and their mix:

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
dropped. A field given twice follows the rule every format shares
(:class:`mailbot.parsers.form.FieldCollector`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from mailbot.parsers.form import FieldCollector, RawForm
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


# --- reading the layouts --------------------------------------------------------------------


@dataclass
class _Entry:
    """One occurrence of a field: its values in order, and where the first one stands."""

    name: str
    location: str
    values: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)  # each list value's own cell


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
