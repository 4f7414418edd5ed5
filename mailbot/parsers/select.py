"""Which form in a mail is the request: an attached CSV, XLSX or JSON file, else the body.

Rules (issue 4):

* An attachment is a form candidate by its file name's extension (``.csv .tsv .xlsx .json``,
  and the refused ``.xls .xlsm .xlsb .ods``, which get "save as .xlsx or .csv"), or, with no
  name, by its content type. A ``.txt`` counts only when it reads as a form (Excel's "Unicode
  text" is a tab-separated .txt; the text blank form is a .txt too). Everything else (images,
  PDFs, ``image001.png`` of a signature) is ignored, as are its size and count: the limits
  bound what mailbot reads, and it never reads those.
* Content beats the name for spreadsheets: a "CSV" that is a zip is read as XLSX; an OLE2
  file (old .xls, password-protected workbook) is refused whatever its name.
* An attached form is the request and the body is a cover letter: the body is ignored unless
  it has form labels of its own. Then a field the body gives differently is a
  ``form.body_conflict`` problem naming both places; a field only the body gives is taken
  (its location says ``本文 N行目``); identical values are fine.
* Two attached forms: ``attachment.two_forms``, naming both; the first one's fields are kept
  so the reply does not also claim its fields are missing.
* Too many candidates, or one over the size limit (``Attachment.truncated`` or ``size``):
  a problem naming the file and the limit; nothing too large is parsed.
* An attachment that cannot be read (garbage, zip bomb, refused format) is always reported,
  even beside a body form: it may be the request. One that reads but holds no label (an ID
  list without labels, an unrelated spreadsheet) is reported only when there is no form at
  all in the mail.
* No attached form: the body form.

A returned form without fields but with problems means "the request could not be read":
the problems say why and no field is to blame.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from mailbot.mime import Attachment, ParsedMail
from mailbot.normalize import split_id_list
from mailbot.parsers.body import parse_body
from mailbot.parsers.csv_form import decode_text, parse_csv
from mailbot.parsers.form import RawField, RawForm, comparable
from mailbot.parsers.json_form import parse_json
from mailbot.parsers.labels import CANONICAL_LABEL_JA, LIST_FIELDS
from mailbot.parsers.xlsx_form import parse_xlsx
from mailbot.problems import Problem


class _Kind(enum.Enum):
    CSV = "csv"
    TEXT = "text"  # .txt: a form only if it reads as one
    XLSX = "xlsx"  # also the refused spreadsheet formats: parse_xlsx says why
    JSON = "json"


_BY_SUFFIX: Final = {
    ".csv": _Kind.CSV,
    ".tsv": _Kind.CSV,
    ".txt": _Kind.TEXT,
    ".xlsx": _Kind.XLSX,
    ".xltx": _Kind.XLSX,
    ".xlsm": _Kind.XLSX,
    ".xltm": _Kind.XLSX,
    ".xls": _Kind.XLSX,
    ".xlsb": _Kind.XLSX,
    ".ods": _Kind.XLSX,
    ".json": _Kind.JSON,
}
_BY_CONTENT_TYPE: Final = {
    "text/csv": _Kind.CSV,
    "text/comma-separated-values": _Kind.CSV,
    "text/x-csv": _Kind.CSV,
    "application/csv": _Kind.CSV,
    "text/tab-separated-values": _Kind.CSV,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _Kind.XLSX,
    "application/vnd.ms-excel.sheet.macroenabled.12": _Kind.XLSX,
    # Windows labels .csv files application/vnd.ms-excel too: the content decides (_parse).
    "application/vnd.ms-excel": _Kind.CSV,
    "application/json": _Kind.JSON,
    "text/json": _Kind.JSON,
}
_SPREADSHEET_MAGIC: Final = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


@dataclass(frozen=True)
class _Candidate:
    attachment: Attachment
    kind: _Kind
    name: str  # the file name, or 添付ファイルN when the mail gave none


def read_request(mail: ParsedMail, *, max_attachments: int, max_attachment_bytes: int) -> RawForm:
    """The request form of ``mail``, with every problem found choosing and reading it."""
    body = parse_body(mail.text)
    candidates = _candidates(mail.attachments)
    if len(candidates) > max_attachments:
        return RawForm("添付ファイル", problems=[_too_many(candidates, max_attachments)])
    results: list[RawForm] = []
    for candidate in candidates:
        if _too_big(candidate.attachment, max_attachment_bytes):
            if candidate.kind is not _Kind.TEXT:  # a big .txt is no form we know of
                problem = _too_large(candidate, max_attachment_bytes)
                results.append(RawForm(candidate.name, problems=[problem]))
            continue
        form = _parse(candidate)
        if form is not None:
            results.append(form)
    return _choose(results, body)


def _choose(results: list[RawForm], body: RawForm) -> RawForm:
    forms = [form for form in results if form.fields]
    failed = [form for form in results if not form.fields and not _holds_no_labels(form)]
    failures = [problem for form in failed for problem in form.problems]
    if forms:
        chosen, others = forms[0], forms[1:]
        problems = [_two_forms(forms)] if others else []
        problems += failures + chosen.problems
        problems += [problem for form in others for problem in form.problems]
        fields, merged = _merge_body(chosen, body)
        return RawForm(chosen.source, fields, problems + merged)
    if failed:
        return RawForm(failed[0].source, dict(body.fields), failures + body.problems)
    if not body.is_empty:
        return body
    unlabelled = [form for form in results if _holds_no_labels(form)]
    if unlabelled:
        problems = [problem for form in unlabelled for problem in form.problems]
        return RawForm(unlabelled[0].source, problems=problems)
    return body


def _holds_no_labels(form: RawForm) -> bool:
    return not form.fields and all(problem.code == "file.no_form" for problem in form.problems)


# --- candidates -----------------------------------------------------------------------------


def _candidates(attachments: Sequence[Attachment]) -> list[_Candidate]:
    found: list[_Candidate] = []
    for number, attachment in enumerate(attachments, start=1):
        kind = _kind(attachment)
        if kind is not None:
            name = (attachment.filename or "").strip() or f"添付ファイル{number}"
            found.append(_Candidate(attachment, kind, name))
    return found


def _kind(attachment: Attachment) -> _Kind | None:
    """By the name's extension when it has a known one; by content type when the name has no
    extension (or there is no name). A name with another extension is no form (image001.png)."""
    name = unicodedata.normalize("NFKC", attachment.filename or "").strip().lower()
    suffix = PurePath(name).suffix if name else ""
    if suffix:
        return _BY_SUFFIX.get(suffix)
    content_type = attachment.content_type.split(";")[0].strip().lower()
    return _BY_CONTENT_TYPE.get(content_type)


def _too_big(attachment: Attachment, limit: int) -> bool:
    return attachment.truncated or attachment.size > limit or len(attachment.payload) > limit


def _parse(candidate: _Candidate) -> RawForm | None:
    data, name = candidate.attachment.payload, candidate.name
    if candidate.kind is _Kind.XLSX or (
        candidate.kind is _Kind.CSV and data.startswith(_SPREADSHEET_MAGIC)
    ):
        return parse_xlsx(data, name)
    if candidate.kind is _Kind.CSV:
        return parse_csv(data, name)
    if candidate.kind is _Kind.JSON:
        return parse_json(data, name)
    return _parse_text(data, name)


def _parse_text(data: bytes, name: str) -> RawForm | None:
    """A .txt that reads as a form: tab-separated (Excel's "Unicode text") or a body-style
    form (the text blank form, filled in). Anything else is not a form: None."""
    text = decode_text(data)
    if text is None:
        return None
    head = text[:4096]
    form = parse_csv(data, name) if "\t" in head else parse_body(text, source=name)
    return form if form.fields else None


# --- the body beside an attached form -------------------------------------------------------


def _merge_body(form: RawForm, body: RawForm) -> tuple[dict[str, RawField], list[Problem]]:
    """The attached form's fields, with what the body adds; conflicts as problems."""
    fields = dict(form.fields)
    if not body.fields:
        return fields, []  # a cover letter
    problems: list[Problem] = []
    for name, said in body.fields.items():
        attached = fields.get(name)
        if attached is None or not attached.value.strip():
            if said.value.strip():
                fields[name] = said
        elif said.value.strip() and _differ(name, attached.value, said.value):
            problems.append(_body_conflict(attached, said))
    return fields, problems + body.problems


_ID_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−ー_.]+")


def _differ(name: str, first: str, second: str) -> bool:
    if name in LIST_FIELDS:
        width = 8 if name == "user_ids" else 5
        return _id_set(first, width) != _id_set(second, width)
    return comparable(first) != comparable(second)


def _id_set(text: str, width: int) -> frozenset[str]:
    pieces = split_id_list(text, width)
    return frozenset(
        _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", piece)).upper() for piece in pieces
    )


# --- problems -------------------------------------------------------------------------------


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    return f"{max(size, 1) / 1024:.0f} KB"


def _too_many(candidates: list[_Candidate], limit: int) -> Problem:
    names = "、".join(f"「{candidate.name}」" for candidate in candidates)
    return Problem(
        code="attachment.too_many",
        field=None,
        value=str(len(candidates)),
        message_ja=(
            f"申込書として読み取るファイル（CSV・Excel・JSON）が{len(candidates)}個添付されています"
            f"（上限{limit}個）: {names}。申込書1つだけを添付して送り直してください。"
        ),
        message_en=(
            f"{len(candidates)} form files (CSV, Excel, JSON) are attached; the limit is "
            f"{limit}. Attach only the request form and send it again."
        ),
        location=None,
    )


def _too_large(candidate: _Candidate, limit: int) -> Problem:
    name, size = candidate.name, candidate.attachment.size
    return Problem(
        code="attachment.too_large",
        field=None,
        value=name,
        message_ja=(
            f"「{name}」は大きすぎるため読み取れません（約{_size(size)}、上限{_size(limit)}）。"
            "申込書以外のシートや画像を削除するか、CSVで保存して送り直してください。"
        ),
        message_en=(
            f'"{name}" is too large to read (about {_size(size)}; the limit is {_size(limit)}). '
            "Remove other sheets and pictures, or save the form as CSV, and send it again."
        ),
        location=name,
    )


def _two_forms(forms: list[RawForm]) -> Problem:
    names = "、".join(f"「{form.source}」" for form in forms)
    return Problem(
        code="attachment.two_forms",
        field=None,
        value=forms[1].source,
        message_ja=(
            f"申込書が{len(forms)}つ添付されています（{names}）。1通のメールに添付できる申込書は"
            "1つです。1つの申込書にまとめるか、申込ごとにメールを分けて送ってください。"
        ),
        message_en=(
            f"{len(forms)} request forms are attached ({', '.join(f.source for f in forms)}). "
            "Attach one form per mail: merge them, or send one mail per request."
        ),
        location=None,
    )


def _body_conflict(attached: RawField, said: RawField) -> Problem:
    label = CANONICAL_LABEL_JA.get(attached.name, attached.name)
    return Problem(
        code="form.body_conflict",
        field=attached.name,
        value=said.value,
        message_ja=(
            f"「{label}」の値が添付の申込書と本文とで異なります（{attached.location}:"
            f"「{attached.value}」、{said.location}:「{said.value}」）。添付の申込書を正しい内容に"
            "して、本文には申込書の項目を書かずに送り直してください。"
        ),
        message_en=(
            f'"{attached.name}" differs between the attached form ({attached.location}: '
            f'"{attached.value}") and the mail body ({said.location}: "{said.value}"). Correct '
            "the attached form and leave the form's labels out of the body."
        ),
        location=said.location,
    )
