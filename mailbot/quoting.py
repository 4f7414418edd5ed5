"""Where the new text of a reply ends: quoted lines and replied-to or forwarded messages.

One place for it, because two readers need it: the body-form parser (a reply that quotes an
earlier form must not merge its fields) and the staff-decision reader (``承認`` in the quoted
part must never count).
"""

from __future__ import annotations

import re
import unicodedata

from mailbot.parsers.labels import label_key


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def is_quoted_line(line: str) -> bool:
    """A line quoted with ``>`` (or the full-width ``＞``)."""
    return _nfkc(line).lstrip().startswith(">")


def new_lines(text: str) -> list[str]:
    """The lines the sender wrote: before any earlier message, without quoted lines."""
    lines = text.splitlines()
    return [line for line in lines[: earlier_message_start(lines)] if not is_quoted_line(line)]


_ORIGINAL_MARKER = re.compile(
    r"^[-=_*\s]*(?:original message|元のメッセージ|forwarded message|転送メッセージ"
    r"|転送されたメッセージ|begin forwarded message:?)[-=_*\s]*$",
    re.IGNORECASE,
)
_WROTE = re.compile(r"^.+(?:\bwrote|書きました):$", re.IGNORECASE)
_ON_WROTE = re.compile(r"^on\s.+\bwrote:$", re.IGNORECASE)
_DATE = r"^\d{4}\s*[年/.-]\s*\d{1,2}\s*[月/.-]\s*\d{1,2}"
_DATE_START = re.compile(_DATE)
# "2026年11月28日(土) 10:00 山田 太郎 <x@y>:": a date, then an address or a time, then ":".
_DATE_ATTRIBUTION = re.compile(_DATE + r".*(?:<[^<>\s]+@[^<>\s]+>|\d{1,2}:\d{2}).*:$")
_HEADER_NAME = re.compile(r"^([^:]{1,20}):")
_FROM_KEYS = frozenset(label_key(name) for name in ("From", "差出人", "送信者"))
_SENT_KEYS = frozenset(label_key(name) for name in ("Sent", "Date", "送信日時", "日時", "送信日"))
_HEADER_BLOCK_REACH = 4  # lines after "From:" in which Outlook puts "Sent:"


def earlier_message_start(lines: list[str]) -> int:
    """Index of the first line of a replied-to or forwarded message, or len(lines)."""
    norms = [_nfkc(line).strip() for line in lines]
    for index, norm in enumerate(norms):
        if _starts_earlier_message(norms, index, norm):
            return index
    return len(lines)


def _starts_earlier_message(norms: list[str], index: int, norm: str) -> bool:
    if not norm:
        return False
    if _ORIGINAL_MARKER.match(norm) or _WROTE.match(norm) or _DATE_ATTRIBUTION.match(norm):
        return True
    # Gmail and Thunderbird wrap a long attribution: "On …, 山田 <" / "yamada@…> wrote:".
    joined = f"{norm} {norms[index + 1]}" if index + 1 < len(norms) else norm
    if _ON_WROTE.match(joined) and norm.lower().startswith("on "):
        return True
    if _DATE_START.match(norm) and _DATE_ATTRIBUTION.match(joined):
        return True
    block = norms[index + 1 : index + 1 + _HEADER_BLOCK_REACH]
    return _header_key(norm) in _FROM_KEYS and any(_header_key(x) in _SENT_KEYS for x in block)


def _header_key(norm: str) -> str | None:
    match = _HEADER_NAME.match(norm)
    return label_key(match.group(1)) if match else None
