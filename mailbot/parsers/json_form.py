"""Read a request form from a JSON attachment: one object, the labels as keys.

The JSON form (docs/domain.md#json) is an object with the English labels as keys (``user_ids`` a
list of strings, or one string with the IDs separated as in the body). Any key :func:`match_label`
knows is accepted, so Japanese keys work too; an unknown key is reported, never dropped. A syntax
error names its line and column, as an editor shows them. Values are kept as typed (trimmed);
numbers become their digits (``"office_code": 12345``).

Locations read ``申込書.json "user_ids"`` (the key as written) and ``申込書.json "user_ids"[2]``
for an item of a list.
"""

from __future__ import annotations

import json
from typing import Final

from mailbot.parsers.form import FieldCollector, RawForm
from mailbot.parsers.labels import (
    CANONICAL_LABEL_JA,
    LIST_FIELDS,
    MULTILINE_FIELDS,
    match_label,
    unknown_label_problem,
)
from mailbot.problems import Problem

# A form with 1,000 IDs is ~15 KB; anything near this is not a form.
MAX_JSON_BYTES: Final = 1024 * 1024


class _Pairs(list[tuple[str, object]]):
    """An object's members in order, duplicates kept (``object_pairs_hook``), and told apart
    from a JSON array, which is a plain list."""


def parse_json(data: bytes, filename: str) -> RawForm:
    """The request form in a JSON attachment, with problems; never raises."""
    document = _load(data, filename)
    if isinstance(document, Problem):
        return RawForm(filename, problems=[document])
    collector = FieldCollector(filename)
    problems: list[Problem] = []
    for key, value in document:
        where = f'{filename} "{key}"'
        name = match_label(key)
        if name is None:
            problems.append(unknown_label_problem(key, where))
            continue
        text = _value_text(name, key, value, where)
        if isinstance(text, Problem):
            problems.append(text)
        else:
            collector.add(name, text, where)
    if not collector.fields and not problems:
        problems.append(_not_object(filename))  # "{}": nothing of a form in it
    return collector.form(problems)


def _load(data: bytes, filename: str) -> _Pairs | Problem:
    if len(data) > MAX_JSON_BYTES:
        return _too_large(filename)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _not_utf8(filename)
    try:
        document = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as error:
        return _syntax(filename, error)
    except RecursionError:  # "[[[[…" nested past the interpreter's limit
        return _not_object(filename)
    if not isinstance(document, _Pairs):
        return _not_object(filename)
    return document


def _value_text(name: str, key: str, value: object, where: str) -> str | Problem:
    """The value as raw text: a list of items becomes one item per line."""
    if isinstance(value, list) and not isinstance(value, _Pairs):
        if name not in LIST_FIELDS and name not in MULTILINE_FIELDS and len(value) > 1:
            return _wrong_type(name, key, where)
        items: list[str] = []
        for index, item in enumerate(value):
            text = _scalar(item)
            if text is None:
                return _wrong_type(name, key, f"{where}[{index}]")
            if text:
                items.append(text)
        return "\n".join(items)
    text = _scalar(value)
    return _wrong_type(name, key, where) if text is None else text


def _scalar(value: object) -> str | None:
    """Text for a string, number or null; None for what no field can hold."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):  # before int: True is an int
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


# --- problems -------------------------------------------------------------------------------


def _syntax(filename: str, error: json.JSONDecodeError) -> Problem:
    where = f"{filename} {error.lineno}行{error.colno}列"
    return Problem(
        code="file.json_syntax",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」のJSONの書き方に誤りがあります（{error.lineno}行目{error.colno}文字目: "
            f'{error.msg}）。カンマ・引用符（"）・括弧の過不足を確かめて直してください。'
        ),
        message_en=(
            f'"{filename}" is not valid JSON (line {error.lineno}, column {error.colno}: '
            f"{error.msg}). Check commas, quotes and brackets."
        ),
        location=where,
    )


def _not_object(filename: str) -> Problem:
    return Problem(
        code="file.json_not_object",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」は申込書の形になっていません。全体を {{ }} で囲み、"
            '"user_ids": ["1ANACA0A"], "reason": "…" のように項目名と値を並べてください。'
        ),
        message_en=(
            f'"{filename}" is not a request form: it must be one object such as '
            '{"user_ids": ["1ANACA0A"], "reason": "..."}.'
        ),
        location=filename,
    )


def _wrong_type(name: str, key: str, where: str) -> Problem:
    label = CANONICAL_LABEL_JA.get(name, name)
    shape_ja = "文字列または文字列の配列" if name in LIST_FIELDS else "文字列"
    shape_en = "a string or a list of strings" if name in LIST_FIELDS else "a string"
    return Problem(
        code="form.json_type",
        field=name,
        value=key,
        message_ja=f"{where}（{label}）の値は{shape_ja}で書いてください。",
        message_en=f'The value of {where} ("{name}") must be {shape_en}.',
        location=where,
    )


def _not_utf8(filename: str) -> Problem:
    return Problem(
        code="file.not_text",
        field=None,
        value=filename,
        message_ja=f"「{filename}」はUTF-8のテキストではありません。UTF-8で保存し直して送ってください。",
        message_en=f'"{filename}" is not UTF-8 text. Save it as UTF-8 and send it again.',
        location=filename,
    )


def _too_large(filename: str) -> Problem:
    limit = f"{MAX_JSON_BYTES // 1024:,} KB"
    return Problem(
        code="file.too_large",
        field=None,
        value=filename,
        message_ja=(
            f"「{filename}」は申込書として大きすぎます（上限 {limit}）。"
            "申込書の項目だけを残して送り直してください。"
        ),
        message_en=f'"{filename}" is too large for a request form (limit {limit}).',
        location=filename,
    )
