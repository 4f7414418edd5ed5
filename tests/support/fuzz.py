"""Mutations of real sample mail and forms, and the properties every reader must keep.

Shared by the short property tests (tests/unit/test_fuzz.py, part of ``make test``) and the long
run (``bench/fuzz.py``). Seeds are the sample messages of tests/samples/ and the attachments
tests/support/attachments.py builds the way Outlook and Thunderbird do; mutations are what
damaged or hostile mail does to them: truncation, byte flips, inserted and repeated bytes,
wrong charset labels and encodings, deep nesting, and (for XLSX) damage inside the zipped XML.

The properties (``check_*``): nothing escapes ``parse_mail`` except :class:`UnreadableMail`;
``classify`` and ``read_request`` (which runs every form parser) never raise on what
``parse_mail`` returns; ``parse_body``, ``parse_csv``, ``parse_xlsx`` and ``parse_json`` never
raise and say why when they read nothing.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from mailbot.classify import classify
from mailbot.mime import ParsedMail, UnreadableMail, parse_mail
from mailbot.parsers.body import parse_body
from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.form import RawForm
from mailbot.parsers.json_form import parse_json
from mailbot.parsers.select import read_request
from mailbot.parsers.xlsx_form import parse_xlsx
from tests.support.attachments import (
    CSV,
    XLSX,
    attachment_mail,
    csv_bytes,
    filled_blank_xlsx,
    json_bytes,
    table_csv,
    vertical_rows,
)
from tests.support.requests import INTAKE, form, html_mail, mail

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# Labels mailers write, labels that lie, and labels Python's codec registry answers strangely
# (binary transforms, codecs that refuse "replace", unknown names, NUL).
CHARSET_LABELS = (
    "utf-8", "UTF-8", "us-ascii", "iso-2022-jp", "ISO-2022-JP-2", "shift_jis", "Windows-31J",
    "cp932", "euc-jp", "utf-16", "utf-16le", "utf-32", "utf-7", "iso-8859-1", "koi8-r",
    "gb2312", "big5", "x-unknown", "unknown-8bit", "", "idna", "punycode", "undefined",
    "rot13", "base64", "hex", "zlib", "uu", "x\x00", "ut\u00e9f-8", "utf-8\"; x=\"", "a" * 300,
)  # fmt: skip
TRANSFER_ENCODINGS = ("base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "")
TEXT_ENCODINGS = ("utf-8", "utf-8-sig", "cp932", "euc-jp", "iso-2022-jp", "utf-16", "utf-16-le")
ALLOWED_MAIL_ERRORS = (UnreadableMail,)


@dataclass(frozen=True)
class Mutant:
    """Mutated bytes and how they came to be (printed by bench/fuzz.py and on failure)."""

    seed: str
    steps: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:
        return f"Mutant({self.seed!r}, {' → '.join(self.steps) or 'unchanged'}, {len(self.data)} B)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with this: the recipe, not kilobytes of bytes.
        printer.text(repr(self))


# --- seeds -----------------------------------------------------------------------------------


@cache
def mail_seeds() -> dict[str, bytes]:
    body_form = form("1ANACA0A", "1ANACA0B", start="2026年12月15日")
    seeds = {path.name: path.read_bytes() for path in sorted(SAMPLES.glob("*.eml"))}
    seeds |= {
        "body-iso-2022-jp": mail(body_form, encoding="iso-2022-jp"),
        "body-shift_jis": mail(body_form, encoding="shift_jis"),
        "body-qp": mail(body_form, encoding="utf-8-qp"),
        "html-only": html_mail(body_form),
        "csv-attached": attachment_mail([("申込書.csv", CSV, csv_seeds()["vertical-cp932"])]),
        "xlsx-attached": attachment_mail([("申込書.xlsx", XLSX, xlsx_seed())], style="thunderbird"),
        "json-attached": attachment_mail([("申込書.json", "application/json", json_bytes())]),
        "help": f"From: a@example.net\r\nTo: {INTAKE}\r\nSubject: help\r\n\r\n".encode(),
    }
    return seeds


@cache
def csv_seeds() -> dict[str, bytes]:
    return {
        "vertical-cp932": csv_bytes(vertical_rows()),
        "vertical-utf-16-tab": csv_bytes(vertical_rows(), "utf-16", "\t"),
        "table-utf-8-sig": table_csv(),
    }


@cache
def xlsx_seed() -> bytes:
    return filled_blank_xlsx()


@cache
def json_seeds() -> dict[str, bytes]:
    return {"form": json_bytes(), "many-ids": json_bytes([f"1ANAC{n:03d}" for n in range(200)])}


@cache
def body_seeds() -> dict[str, str]:
    seeds = {"form": form("1ANACA0A", "1ANACA0B", start="2026年12月15日", remarks="至急")}
    for name, raw in mail_seeds().items():
        text = parse_mail(raw).text
        if text.strip():
            seeds[name] = text
    return seeds


# --- byte mutations --------------------------------------------------------------------------

Operation = Callable[[st.DrawFn, bytes], tuple[bytes, str]]


def _position(draw: st.DrawFn, data: bytes) -> int:
    return draw(st.integers(0, len(data)))


def truncate(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    at = _position(draw, data)
    return data[:at], f"truncate@{at}"


def flip(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "flip(empty)"
    at = draw(st.integers(0, len(data) - 1))
    mask = draw(st.integers(1, 255))
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :], f"flip@{at}^{mask:#04x}"


def insert(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    at = _position(draw, data)
    piece = draw(
        st.sampled_from([b"\r\n", b"\r\n\r\n", b"\x00", b"\x1b$B", b"=?", b"--", b"\xff\xfe"])
        | st.binary(min_size=1, max_size=16)
    )
    return data[:at] + piece + data[at:], f"insert@{at}:{piece[:8]!r}"


def delete(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    start = _position(draw, data)
    end = draw(st.integers(start, min(len(data), start + 64)))
    return data[:start] + data[end:], f"delete@{start}:{end - start}"


def repeat(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    start = _position(draw, data)
    end = draw(st.integers(start, min(len(data), start + 32)))
    times = draw(st.integers(2, 200))
    return data[:start] + data[start:end] * times + data[
        end:
    ], f"repeat@{start}:{end - start}x{times}"


BYTE_OPERATIONS: tuple[Operation, ...] = (truncate, flip, insert, delete, repeat)


# --- mail-specific mutations -----------------------------------------------------------------

_CHARSET = re.compile(rb'charset\s*=\s*"?[^";\r\n]*"?', re.I)
_CTE = re.compile(rb"(Content-Transfer-Encoding:[ \t]*)[^\r\n]*", re.I)


def relabel(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A wrong charset label on one part (or the first encoded-word)."""
    label = draw(st.sampled_from(CHARSET_LABELS))
    found = list(_CHARSET.finditer(data))
    if found:
        match = found[draw(st.integers(0, len(found) - 1))]
        value = b'charset="' + label.encode("utf-8", "surrogateescape") + b'"'
        return data[: match.start()] + value + data[match.end() :], f"charset={label!r}"
    word = re.search(rb"=\?[^?]*\?", data)
    if word:
        new = b"=?" + label.encode("utf-8") + b"?"
        return data[: word.start()] + new + data[word.end() :], f"word-charset={label!r}"
    return data, "relabel(no label)"


def recode(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A wrong Content-Transfer-Encoding on one part."""
    found = list(_CTE.finditer(data))
    if not found:
        return data, "recode(none)"
    match = found[draw(st.integers(0, len(found) - 1))]
    cte = draw(st.sampled_from(TRANSFER_ENCODINGS))
    return data[: match.start(1)] + match.group(1) + cte.encode() + data[
        match.end() :
    ], f"cte={cte}"


def nest(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """The message's body wrapped in ``depth`` levels of multipart (or message/rfc822)."""
    # Hypothesis raises the recursion limit while it runs a test (by up to 2,000 frames), so
    # only thousands of levels reach the parser's limit here; the worker gives up near 1,000.
    depth = draw(st.sampled_from([5000, 1, 2, 33, 600, 1200, 5000]))
    kind = draw(st.sampled_from(["multipart/mixed", "message/rfc822"]))
    head, body = [*_HEADER_END.split(data, maxsplit=1), b""][:2]
    if kind == "message/rfc822":
        wrapper = b"".join(b"Content-Type: message/rfc822\r\n\r\n" for _ in range(depth))
    else:
        wrapper = b"".join(
            b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i)
            for i in range(depth)
        )
    lines = [line for line in _LINE_END.split(head) if not line.lower().startswith(b"content-")]
    return b"\r\n".join(lines) + b"\r\n" + wrapper + b"\r\n" + body, f"nest({kind}x{depth})"


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


MAIL_OPERATIONS: tuple[Operation, ...] = (*BYTE_OPERATIONS, relabel, relabel, recode, nest)


# --- file-specific mutations -----------------------------------------------------------------


def reencode_csv(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """The CSV's text in another encoding than the one its bytes were (no label says which)."""
    text = None
    for codec in ("utf-8-sig", "utf-16", "cp932"):
        try:
            text = data.decode(codec)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        return data, "reencode(undecodable)"
    codec = draw(st.sampled_from(TEXT_ENCODINGS))
    return text.encode(codec, errors="replace"), f"reencode({codec})"


def xlsx_member(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """Damage inside one zipped XML part, the zip itself left valid (so openpyxl reads it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as source:
            members = [(info, source.read(info)) for info in source.infolist()]
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, ValueError, OSError, EOFError):
        return data, "xlsx-member(not a zip)"
    if not members:
        return data, "xlsx-member(empty)"
    index = draw(st.integers(0, len(members) - 1))
    operation = draw(st.sampled_from(BYTE_OPERATIONS))
    info, content = members[index]
    changed, step = operation(draw, content)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for position, (member, old) in enumerate(members):
            target.writestr(member, changed if position == index else old)
    return out.getvalue(), f"{info.filename}:{step}"


def json_nest(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    depth = draw(st.sampled_from([10, 1_000, 100_000]))
    opener = draw(st.sampled_from([b"[", b'{"user_ids":']))
    closer = b"]" if opener == b"[" else b"}"
    return opener * depth + data + closer * depth, f"json-nest({opener.decode()}x{depth})"


CSV_OPERATIONS: tuple[Operation, ...] = (*BYTE_OPERATIONS, reencode_csv)
XLSX_OPERATIONS: tuple[Operation, ...] = (*BYTE_OPERATIONS, xlsx_member, xlsx_member, xlsx_member)
JSON_OPERATIONS: tuple[Operation, ...] = (*BYTE_OPERATIONS, json_nest)


# --- strategies ------------------------------------------------------------------------------


def mutants(
    seeds: Callable[[], dict[str, bytes]], operations: tuple[Operation, ...], most: int = 4
) -> st.SearchStrategy[Mutant]:
    @st.composite
    def build(draw: st.DrawFn) -> Mutant:
        chosen = seeds()
        name = draw(st.sampled_from(sorted(chosen)))
        data = chosen[name]
        steps: list[str] = []
        for _ in range(draw(st.integers(1, most))):
            operation = draw(st.sampled_from(operations))
            data, step = operation(draw, data)
            steps.append(step)
        return Mutant(name, tuple(steps), data)

    return build()


def mail_mutants() -> st.SearchStrategy[Mutant]:
    return mutants(mail_seeds, MAIL_OPERATIONS)


def csv_mutants() -> st.SearchStrategy[Mutant]:
    return mutants(csv_seeds, CSV_OPERATIONS)


def xlsx_mutants() -> st.SearchStrategy[Mutant]:
    return mutants(lambda: {"filled-blank-form": xlsx_seed()}, XLSX_OPERATIONS, most=2)


def json_mutants() -> st.SearchStrategy[Mutant]:
    return mutants(json_seeds, JSON_OPERATIONS)


@st.composite
def body_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(how it was made, text): a body's text with bytes damaged, or odd characters inserted."""
    seeds = body_seeds()
    name = draw(st.sampled_from(sorted(seeds)))
    text = seeds[name]
    steps = [name]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            data, step = draw(st.sampled_from(BYTE_OPERATIONS))(draw, text.encode("utf-8"))
            text = data.decode("utf-8", errors="replace")
        else:
            at = draw(st.integers(0, len(text)))
            piece = draw(
                st.sampled_from(
                    ["：", "■", "【", "\u202e", "\u3000", "\ufeff", "\x00", "> ", "-- \n"]
                )
                | st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)
            )
            text, step = text[:at] + piece + text[at:], f"insert@{at}:{piece!r}"
        steps.append(step)
    return " → ".join(steps), text


# --- properties ------------------------------------------------------------------------------


def check_mail(data: bytes) -> ParsedMail | None:
    """parse_mail raises nothing but UnreadableMail; classify and read_request (every form
    parser, through the attachments) raise nothing on what it returns."""
    try:
        parsed = parse_mail(data, max_attachment_bytes=1024 * 1024)
    except ALLOWED_MAIL_ERRORS:
        return None
    assert isinstance(parsed.text, str) and isinstance(parsed.subject, str)
    assert "\r" not in parsed.subject and "\n" not in parsed.subject
    classify(parsed, "x@example.net", intake_address=INTAKE, own_domain="mailbot.localhost")
    check_form(read_request(parsed, max_attachments=5, max_attachment_bytes=1024 * 1024))
    return parsed


def check_form(form: RawForm) -> RawForm:
    """A form reader's answer: fields, or problems saying why there are none."""
    assert isinstance(form, RawForm)
    for problem in form.problems:
        assert problem.code and problem.message_ja and problem.message_en
    return form


def check_file(form: RawForm) -> RawForm:
    """An attached form's reader: what it read, or at least one problem saying why not."""
    assert form.fields or form.problems
    return check_form(form)


def check_csv(data: bytes) -> RawForm:
    return check_file(parse_csv(data, "申込書.csv"))


def check_xlsx(data: bytes) -> RawForm:
    return check_file(parse_xlsx(data, "申込書.xlsx"))


def check_json(data: bytes) -> RawForm:
    return check_file(parse_json(data, "申込書.json"))


def check_body(text: str) -> RawForm:
    return check_form(parse_body(text))
