"""Find the request form's labelled fields in a mail body.

Applicants write ``利用者ID：1ANACA0A``, ``【利用者ID】1ANACA0A``, ``■利用者ID: …``, a label
alone on a line with the values on the lines below, English ``user_ids: a, b``, any width. Mail also
carries greetings, quoted replies and signatures, so the parser works in three steps:

1. Cut the text of an earlier message: everything from a reply/forward header
   (``-----Original Message-----``, ``On … wrote:``, ``2026年11月28日(土) 10:00 山田 <x@y>:``,
   ``…さんは書きました:``, an Outlook ``From:``/``Sent:`` block). Lines quoted with ``>``/``＞``
   are skipped wherever they stand. A reply that quotes an earlier form never merges it.
2. Classify every line on its own (blank, quote, separator, closing phrase, label line, text).
3. Walk the lines with one open field at a time. The *form* runs from the first form-specific
   label to the *trailer*: the first separator, closing phrase, heading or unlabelled line
   after the last form-specific label, or a ``--`` signature delimiter anywhere after the first
   one. Nothing in the trailer is read, so a signature's ``TEL: 03-…`` neither overrides
   ``applicant_phone`` nor counts as an unknown label. "Form-specific" excludes labels that
   signatures also use (``TEL``, ``電話番号``, ``担当者``): they are read inside the form but
   can neither start it nor extend it. A body without a form-specific label is no form at all
   (empty :class:`RawForm`): a mail that carries its form in an attachment often has a
   signature with ``TEL:`` in its body.

Values are kept as typed (no NFKC: names keep ㈱ ① 髙), only trimmed. Typing is
:mod:`mailbot.draft`'s job.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field

from mailbot.parsers.form import RawField, RawForm, comparable, duplicate_problem
from mailbot.parsers.labels import (
    CANONICAL_LABEL_JA,
    LIST_FIELDS,
    MULTILINE_FIELDS,
    label_key,
    match_label,
    strip_label_decorations,
    unknown_label_problem,
)
from mailbot.problems import Problem
from mailbot.quoting import earlier_message_start

# --- line classification ------------------------------------------------------------------


class _Kind(enum.Enum):
    BLANK = "blank"
    QUOTE = "quote"  # "> …": text of an earlier message
    SEPARATOR = "separator"  # "━━━━", "-----", "＝＝＝"
    SIGDASH = "sigdash"  # "-- ": the signature delimiter
    CLOSING = "closing"  # "以上", "よろしくお願いいたします。", "Best regards,"
    HEADER = "header"  # "件名: …", "From: …": mail headers typed or pasted into the body
    FIELD = "field"  # a known label, with or without a value on the line
    UNKNOWN = "unknown"  # "LABEL：value" or "【LABEL】value" with a label not in the table
    HEADING = "heading"  # "【利用者ID廃止申込】", "■担当者情報": decoration, no colon, no value
    TEXT = "text"  # anything else: a value line, or prose


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based, in the text as given
    text: str  # stripped
    kind: _Kind
    name: str | None = None  # FIELD: canonical field name
    label: str = ""  # FIELD / UNKNOWN / HEADING: the label as typed, without decoration
    value: str = ""  # the value typed on the label's line
    bracketed: bool = False  # UNKNOWN / HEADING written as 【LABEL】
    decorated: bool = False  # UNKNOWN / HEADING led by a heading bullet (■ …) or brackets


_OPENERS = "【[［(（〔〈《「『"
_CLOSERS = "】]］)）〕〉》」』"
_BRACKET_PAIRS = {"【": "】", "[": "]］", "［": "］]", "〔": "〕", "〈": "〉", "《": "》"}
_DIGITS = "0123456789０１２３４５６７８９"
_URL_SCHEMES = frozenset({"http", "https", "mailto", "ftp", "file"})

# Bullets and numbering before a label or a list item, in both widths. The "heading" bullets
# make a line without colon a heading; list bullets (・ - *) and numbering make it an item.
_HEADING_BULLETS = "■□●○◆◇▼▽▲△►▶★☆◎#＃"
_LIST_BULLETS = "・･*＊•+＋\\-－"
_NUMBERING = (
    r"[(（][0-9０-９]{1,3}[)）]|[0-9０-９]{1,3}[.)．）、]"
    r"|[①-⑳㉑-㉟㊱-㊿⑴-⒇⒈-⒛❶-❿➀-➉]"
)
_MARK = rf"(?:[{_HEADING_BULLETS}{_LIST_BULLETS}]|{_NUMBERING})"
_PREFIX = re.compile(rf"^{_MARK}(?:\s*{_MARK})*\s*")
_HEADING_MARK = re.compile(rf"[{_HEADING_BULLETS}]")

# Separators: a line of these (NFKC) characters, at least three, possibly with a short title
# in the middle ("――― 申込内容 ―――").
_SEP = r"\-=_~*#+.・…‐‑‒–—―─━═┄┅┈┉〜ー■□◆◇●○★☆/|"
_SEPARATOR = re.compile(rf"^[{_SEP}\s]{{3,}}$|^[{_SEP}]{{3,}}.{{0,30}}[{_SEP}]{{3,}}$")
_CLOSING = re.compile(
    r"^(?:以上(?:です|となります)?[。.!]?"
    r"|以上[、,].*(?:よろしく|宜しく|お願い).*"
    r"|(?:何卒|なにとぞ|どうぞ|引き続き|今後とも)?\s*(?:よろしく|宜しく)(?:お願い|御願い).*"
    r"|(?:best |kind |warm )?regards,?|thanks?(?: you)?(?: very much)?[,.!]*"
    r"|sincerely(?: yours)?,?)$",
    re.IGNORECASE,
)

# Header names typed or pasted into a body: never a form label, never worth reporting.
_HEADER_KEYS = frozenset(
    label_key(name)
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Sent",
        "Reply-To",
        "Re",
        "Fw",
        "Fwd",
        "件名",
        "差出人",
        "送信者",
        "宛先",
        "送信日時",
    )
)

# Labels that signatures use too. Inside the form they are fields like any other, but they do
# not make a body a form, nor push the end of the form past a signature.
SIGNATURE_LIKE_LABELS = frozenset(
    label_key(alias)
    for alias in (
        "TEL",
        "電話",
        "電話番号",
        "phone",
        "telephone",
        "phone number",
        "担当者",
        "担当者名",
        "担当者氏名",
    )
)

# An unknown label must look like one (see _plausible_label).
_MAX_LABEL_CHARS = 20
_PROSE_CHARS = re.compile(r"[。、，,.!?！？「」『』@/\\<>\"'…]")
_PROSE_ENDING = re.compile(
    r"(?:です|ます|ました|ません|ください|下さい|でした|ございます|おります|通り|とおり"
    r"|様|御中|殿|各位|さん)$"
)
_ENGLISH_WORDS = re.compile(r"[A-Za-z][\w&'-]*(?: [A-Za-z][\w&'-]*){0,2}", re.ASCII)

# A blank form's hint left in place ("（任意　例: 1ANAC）") is no value.
_WHOLE_NOTE = re.compile(r"[（(][^（）()]*[）)]")
# A list item across a blank line: IDs and codes are letters and digits (any width, with
# the separators people type), never kana or kanji, so a signature's name cannot be one.
_LIST_ITEM = re.compile(r"[0-9A-Za-z\s,、;/・\-.ー‐−–—]*[0-9A-Za-z][0-9A-Za-z\s,、;/・\-.ー‐−–—]*")


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _classify(number: int, raw: str) -> _Line:
    text = raw.strip()
    norm = _nfkc(text)
    kind: _Kind | None = None
    if not text:
        kind = _Kind.BLANK
    elif norm.startswith(">"):
        kind = _Kind.QUOTE
    elif norm == "--":
        kind = _Kind.SIGDASH
    elif _SEPARATOR.match(norm):
        kind = _Kind.SEPARATOR
    elif _CLOSING.match(norm):
        kind = _Kind.CLOSING
    if kind is not None:
        return _Line(number, text, kind)
    return _label_line(number, text) or _Line(number, text, _Kind.TEXT)


def _label_line(number: int, text: str) -> _Line | None:
    """The line as a FIELD, HEADER, UNKNOWN or HEADING line, or None when it is plain text.

    Known labels are tried first, in the order that lets the longest label win: before a colon
    (``申込担当者電話番号：``), in brackets (``【備考】10:00以降``), before a tab or wide space
    (``申込担当者　電話番号　03-…``), alone on the line. Only then is an unknown label considered.
    """
    prefix_match = _PREFIX.match(text)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = text[len(prefix) :]
    heading = bool(_HEADING_MARK.search(prefix))
    colon = _label_colon(rest)
    left, right = (rest[:colon], rest[colon + 1 :]) if colon is not None else ("", "")
    bracket = _leading_bracket(rest)
    known = _known_label(rest, colon, bracket, loose=bool(prefix))
    if known is not None:
        name, label, value = known
        return _Line(number, text, _Kind.FIELD, name, label, _value(value))
    if colon is not None and label_key(strip_label_decorations(left)) in _HEADER_KEYS:
        return _Line(number, text, _Kind.HEADER)
    if bracket is not None and _plausible_label(bracket[0]):
        inner, after = bracket
        value = _value(after)
        kind = _Kind.UNKNOWN if value else _Kind.HEADING
        return _Line(
            number, text, kind, label=inner.strip(), value=value, bracketed=True, decorated=True
        )
    if colon is not None and _plausible_label(left):
        label = _display_label(left)
        return _Line(
            number, text, _Kind.UNKNOWN, label=label, value=right.strip(), decorated=heading
        )
    if heading and _plausible_label(rest):
        return _Line(number, text, _Kind.HEADING, label=_display_label(rest), decorated=True)
    if heading or not rest:
        # "■ 株式会社ABC 物流部", a bullet alone: decoration, like a separator line.
        return _Line(number, text, _Kind.SEPARATOR)
    return None


def _known_label(
    rest: str, colon: int | None, bracket: tuple[str, str] | None, *, loose: bool
) -> tuple[str, str, str] | None:
    """(field name, label as typed, value) when the line starts with a known label."""
    if colon is not None and (name := match_label(rest[:colon])):
        return name, _display_label(rest[:colon]), rest[colon + 1 :]
    if bracket is not None and (name := match_label(bracket[0])):
        return name, bracket[0].strip(), bracket[1]
    split = _split_on_space(rest, loose=loose)
    if split is not None:
        return split
    if name := match_label(rest):
        return name, _display_label(rest), ""
    return None


def _label_colon(text: str) -> int | None:
    """Index of the colon that ends a label: outside brackets, not in a time or a URL."""
    depth = 0
    for index, char in enumerate(text):
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(0, depth - 1)
        elif char in ":：" and depth == 0 and index > 0 and not _in_time_or_url(text, index):
            return index
    return None


def _in_time_or_url(text: str, index: int) -> bool:
    after = text[index + 1 : index + 3]
    if _nfkc(after) == "//" or text[:index].lower() in _URL_SCHEMES:  # "https://…", "mailto:…"
        return True
    # "10:00", "１０：００": a colon between digits is part of a value, not after a label.
    return text[index - 1] in _DIGITS and after != "" and after[0] in _DIGITS


def _leading_bracket(text: str) -> tuple[str, str] | None:
    """(inside, after) for a line that starts with 【…】, ［…］, […], 〔…〕, 〈…〉 or 《…》."""
    closers = _BRACKET_PAIRS.get(text[:1])
    if closers is None:
        return None
    for index, char in enumerate(text[1:], start=1):
        if char in closers:
            return text[1:index], text[index + 1 :]
    return None


def _split_on_space(text: str, *, loose: bool) -> tuple[str, str, str] | None:
    """A known label followed by a tab or wide space and a value: ``事業所コード\tTYO01``.

    Excel pastes use tabs and people align with U+3000 or several spaces; after a bullet or
    number (``■申込担当者 加藤``) one space is enough. The longest known label wins.
    """
    gaps = re.compile(r"\s+" if loose else r"\t+|\s*\u3000\s*| {2,}")
    best: tuple[str, str, str] | None = None
    for gap in gaps.finditer(text):
        label, value = text[: gap.start()], text[gap.end() :].strip()
        if gap.start() > 0 and value and (name := match_label(label)):
            best = (name, label.strip(), value)
    return best


def _plausible_label(text: str) -> bool:
    """Does ``text`` (before a colon, or in brackets) look like a form label rather than prose?

    Short (≤ 20 characters), no sentence punctuation, URL or address characters, at most one
    digit, at least one letter, no spaces except between up to three English words, and no
    sentence or address ending (です, ます, ください, 様, 御中…).
    """
    cleaned = strip_label_decorations(text)
    if not cleaned or len(cleaned.replace(" ", "")) > _MAX_LABEL_CHARS:
        return False
    if _PROSE_CHARS.search(cleaned) or _PROSE_ENDING.search(cleaned):
        return False
    # Digits counted before numbering is stripped: "1ANACA0A：旧端末" is a value, not a label.
    if sum(char.isdigit() for char in _nfkc(text)) > 1 or not any(c.isalpha() for c in cleaned):
        return False
    return " " not in cleaned or bool(_ENGLISH_WORDS.fullmatch(cleaned))


def _display_label(text: str) -> str:
    """The label as typed, for messages: without bullets, brackets around it and the colon."""
    label = _PREFIX.sub("", text.strip()).rstrip(":： \t\u3000")
    bracket = _leading_bracket(label)
    return bracket[0].strip() if bracket is not None and not bracket[1].strip() else label


def _value(text: str) -> str:
    """The value as typed, trimmed (also of U+3000); a blank form's ``（…）`` hint is empty."""
    value = text.strip().lstrip(":：").strip()
    return "" if _WHOLE_NOTE.fullmatch(value) else value


# --- the walk -------------------------------------------------------------------------------


@dataclass
class _Open:
    """The label whose value lines are being read."""

    line: _Line
    report: bool = True  # UNKNOWN / HEADING: report it when closed
    values: list[str] = field(default_factory=list)


class _Walker:
    """Reads classified lines into a RawForm, one open label at a time."""

    def __init__(self, source: str, lines: list[_Line]) -> None:
        self.source = source
        self.lines = lines
        self.form = RawForm(source)
        self.open: _Open | None = None
        self.problems: list[tuple[int, Problem]] = []  # by line number, reported in line order
        specific = [i for i, line in enumerate(lines) if _is_form_specific(line)]
        self.first = specific[0] if specific else len(lines)
        self.last = specific[-1] if specific else -1

    def run(self) -> RawForm:
        if self.last < 0:
            return self.form
        for index, line in enumerate(self.lines):
            if self._trailer_starts(index, line):
                break
            self._read(index, line)
        self._close()
        self.form.problems.extend(p for _, p in sorted(self.problems, key=lambda item: item[0]))
        return self.form

    def _trailer_starts(self, index: int, line: _Line) -> bool:
        if index > self.first and line.kind is _Kind.SIGDASH:
            return True
        if index <= self.last:
            return False
        if line.kind in (_Kind.SEPARATOR, _Kind.CLOSING, _Kind.HEADER, _Kind.HEADING):
            return True
        # After the last field, a line that no open list/free-text field takes is the
        # signature or a closing: a single-value field that has its value takes none.
        return line.kind is _Kind.TEXT and not self._takes_more()

    def _takes_more(self) -> bool:
        current = self.open
        if current is None:
            return False
        name = current.line.name
        if name is None or name in LIST_FIELDS or name in MULTILINE_FIELDS:
            return True
        return not any(current.values)

    def _read(self, index: int, line: _Line) -> None:
        kind = line.kind
        if kind is _Kind.BLANK:
            if not self._list_goes_on(index):
                self._close()
        elif kind is _Kind.FIELD:
            self._close()
            self.open = _Open(line, values=[line.value])
        elif kind is _Kind.UNKNOWN:
            self._read_unknown(index, line)
        elif kind is _Kind.HEADING:
            self._close()
            self.open = _Open(line, report=index >= self.first)
        elif kind is _Kind.TEXT:
            self._read_text(index, line)
        else:  # quote, separator, closing, header: end the open field, say nothing
            self._close()

    def _read_unknown(self, index: int, line: _Line) -> None:
        current = self.open
        if current and current.line.name in MULTILINE_FIELDS and not line.decorated:
            # "背景：…" inside a reason is part of the reason, not a new label.
            current.values.append(line.text)
            return
        self._close()
        # Before the form, "【…】text" is a title; a "LABEL：value" is a mislabelled field.
        self.open = _Open(line, report=index >= self.first or not line.bracketed)

    def _read_text(self, index: int, line: _Line) -> None:
        if self.open is not None:
            self._continue(self.open, line)
        elif self.first < index and "。" not in line.text:
            # Inside the form, a line under no label may be a value the applicant meant to
            # give (an ID after a blank line): say so rather than drop it. Sentences are prose.
            self.problems.append((line.number, _unlabelled_line(line, self._where(line))))

    def _continue(self, current: _Open, line: _Line) -> None:
        name = current.line.name
        if name in LIST_FIELDS:
            item = _PREFIX.sub("", line.text).strip()
            current.values.append(item)
        elif name is not None and name not in MULTILINE_FIELDS and any(current.values):
            self.problems.append((line.number, _extra_line(name, line, self._where(line))))
        else:
            current.values.append(line.text)

    def _list_goes_on(self, index: int) -> bool:
        """A list field reads on over blank lines while what follows are ID-like lines."""
        current = self.open
        if current is None or current.line.name not in LIST_FIELDS:
            return False
        following = next((ln for ln in self.lines[index:] if ln.kind is not _Kind.BLANK), None)
        return (
            following is not None
            and following.kind is _Kind.TEXT
            and bool(_LIST_ITEM.fullmatch(_nfkc(_PREFIX.sub("", following.text))))
        )

    def _close(self) -> None:
        current, self.open = self.open, None
        if current is None:
            return
        if current.line.name is not None:
            self._commit(current.line.name, current)
        elif current.report and (current.line.kind is _Kind.UNKNOWN or any(current.values)):
            # A heading is reported only when values follow it: then it was meant as a label.
            problem = unknown_label_problem(current.line.label, self._where(current.line))
            self.problems.append((current.line.number, problem))

    def _commit(self, name: str, current: _Open) -> None:
        value = "\n".join(v for v in current.values if v)
        new = RawField(name, value, self._where(current.line))
        old = self.form.fields.get(name)
        if old is None or (not old.value and value):
            self.form.fields[name] = new
        elif name in LIST_FIELDS:
            # "利用者ID：A" and "利用者ID：B" on two lines is one list.
            merged = "\n".join(v for v in (old.value, value) if v)
            self.form.fields[name] = RawField(name, merged, old.location)
        elif value and comparable(value) != comparable(old.value):
            self.problems.append((current.line.number, duplicate_problem(old, new)))

    def _where(self, line: _Line) -> str:
        return f"{self.source} {line.number}行目"


def _is_form_specific(line: _Line) -> bool:
    if line.kind is not _Kind.FIELD:
        return False
    return label_key(strip_label_decorations(line.label)) not in SIGNATURE_LIKE_LABELS


# --- problems -------------------------------------------------------------------------------


def _extra_line(name: str, line: _Line, location: str) -> Problem:
    label = CANONICAL_LABEL_JA[name]
    return Problem(
        code="form.extra_line",
        field=name,
        value=line.text,
        message_ja=(
            f"「{label}」に書ける値は1つです。{location}の「{line.text}」はどの項目の値か"
            "分かりません。項目名を付けるか、削除してください。"
        ),
        message_en=(
            f'"{name}" takes a single value; "{line.text}" ({location}) belongs to no label. '
            "Add a label or remove the line."
        ),
        location=location,
    )


def _unlabelled_line(line: _Line, location: str) -> Problem:
    return Problem(
        code="form.unlabelled_line",
        field=None,
        value=line.text,
        message_ja=(
            f"{location}の「{line.text}」に項目名がありません。「項目名：値」の形で書くか、"
            "削除してください。"
        ),
        message_en=(
            f'"{line.text}" ({location}) has no label. Write it as "label: value" or remove it.'
        ),
        location=location,
    )


# --- entry point ----------------------------------------------------------------------------

_NEWLINE = re.compile(r"\r\n|\r|\n")


def parse_body(text: str, *, source: str = "本文") -> RawForm:
    """The labelled fields of a mail body, with problems (unknown labels, duplicates…).

    Locations read ``本文 N行目`` (``source`` and the 1-based line of the label). A body
    without any form-specific label gives an empty form: the request is elsewhere, or absent.
    """
    raw_lines = _NEWLINE.split(text.removeprefix("\ufeff"))
    end = earlier_message_start(raw_lines)
    lines = [_classify(number, raw) for number, raw in enumerate(raw_lines[:end], start=1)]
    return _Walker(source, lines).run()
