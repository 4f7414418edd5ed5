"""Header values as text: RFC 2047 encoded-words, raw 8-bit values, parameters (RFC 2231),
and the fields intake reads (addresses, Message-IDs, the date).

Values come from ``policy.compat32`` as raw strings (8-bit bytes surrogate-escaped); every
charset decision goes through :func:`mailbot.mime.charsets.decode_part_text`
(docs/japanese-mail.md#headers). Nothing here raises on bad input.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

from mailbot.mime.charsets import decode_part_text, normalise_label

HeaderMap = Mapping[str, tuple[str, ...]]
"""Lower-case header name → every value in message order (unfolded, encoded-words kept)."""

_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _to_bytes(text: str) -> bytes:
    """A compat32 string back to its bytes: surrogate escapes are the original 8-bit bytes."""
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that never was a byte
        return text.encode("utf-8", errors="replace")


def _unfold(value: str) -> str:
    return _FOLD.sub("", value).replace("\r", "").replace("\n", "")


def _clean_raw_value(value: str) -> str:
    """Unfolded header value as clean text; raw 8-bit or raw JIS values go through the chain."""
    value = _unfold(value)
    if value.isascii() and "\x1b" not in value:
        return value
    return decode_part_text(_to_bytes(value), None)


def _decode_word_bytes(encoding: str, text: str) -> bytes | None:
    data = text.encode("ascii", errors="replace")
    try:
        if encoding in "bB":
            data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            data += b"=" * (-len(data) % 4)
            return binascii.a2b_base64(data)
        return binascii.a2b_qp(data, header=True)
    except (binascii.Error, ValueError):
        return None


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 encoded-words (and raw 8-bit text) in one header value.

    Adjacent words of one charset are joined as bytes before decoding, so a character split
    across words survives; whitespace between encoded-words is dropped (RFC 2047 §6.2).
    Encoded-words inside quoted strings are decoded too: Japanese mailers put them there.
    """
    value = _clean_raw_value(value)
    pieces: list[tuple[str | None, bytes | str]] = []  # (charset, bytes) or (None, literal)
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        decoded = _decode_word_bytes(match.group(2), match.group(3))
        if decoded is None:
            continue  # broken word: left in place as literal text
        gap = value[pos : match.start()]
        if gap and not (gap.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, gap))
        charset = match.group(1).partition("*")[0]  # RFC 2231 §5: =?utf-8*ja?…
        if pieces and pieces[-1][0] is not None and _same_label(pieces[-1][0], charset):
            previous = pieces[-1][1]
            assert isinstance(previous, bytes)
            pieces[-1] = (charset, previous + decoded)
        else:
            pieces.append((charset, decoded))
        pos = match.end()
    pieces.append((None, value[pos:]))
    return "".join(
        piece if isinstance(piece, str) else decode_part_text(piece, charset)
        for charset, piece in pieces
    )


def _same_label(a: str | None, b: str) -> bool:
    return normalise_label(a) == normalise_label(b)


_PARAM_NAME = re.compile(r"^([^*]+)(?:\*(\d+))?(\*)?$")


def _split_params(value: str) -> Iterator[tuple[str, str]]:
    """(name, value) for each ``;name=value`` after the first item, unquoted; never raises."""
    i = value.find(";")
    while 0 <= i < len(value):
        i += 1
        eq = value.find("=", i)
        semi = value.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            i = semi
            continue
        name = value[i:eq].strip().lower()
        j = eq + 1
        while j < len(value) and value[j] in " \t":
            j += 1
        if j < len(value) and value[j] == '"':
            text, i = _read_quoted(value, j + 1)
            yield name, text
            i = value.find(";", i)
        else:
            end = value.find(";", j)
            end = len(value) if end < 0 else end
            yield name, value[j:end].strip()
            i = end


def _read_quoted(value: str, i: int) -> tuple[str, int]:
    """A quoted-string body from ``i``; backslash escapes only ``\\"`` and ``\\\\`` so Windows
    paths stay readable. An unterminated string runs to the end."""
    out: list[str] = []
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] in '"\\':
            out.append(value[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def parse_header_params(value: str) -> dict[str, str]:
    """Parameters of a Content-Type/Content-Disposition value, decoded.

    RFC 2231 (``name*=charset'lang'%XX``, continuations ``name*0*=``, ``name*1=``) sections
    are joined as bytes before decoding (an ISO-2022-JP or UTF-8 character may span sections)
    and take precedence over a plain ``name=``. Plain values get RFC 2047 decoding, because
    Outlook and Japanese mailers put encoded-words inside quoted ``filename="..."``.
    """
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for raw_name, raw_value in _split_params(_unfold(value)):
        match = _PARAM_NAME.match(raw_name)
        if match is None:
            continue
        name, number, star = match.groups()
        if number is None and star is None:
            plain.setdefault(name, decode_header_value(raw_value))
        else:
            sections.setdefault(name, {}).setdefault(int(number or 0), (raw_value, bool(star)))
    params = dict(plain)
    for name, parts in sections.items():
        params[name] = _join_rfc2231(parts)
    return params


def _join_rfc2231(parts: dict[int, tuple[str, bool]]) -> str:
    charset: str | None = None
    data = bytearray()
    first = min(parts)
    for number in sorted(parts):
        text, encoded = parts[number]
        if not encoded:
            data += _to_bytes(text)
            continue
        if number == first and text.count("'") >= 2:
            charset, _lang, text = text.split("'", 2)
        data += unquote_to_bytes(_to_bytes(text))
    return decode_part_text(bytes(data), charset)


def content_type(headers: HeaderMap, default: str) -> tuple[str, dict[str, str]]:
    values = headers.get("content-type")
    if not values:
        return default, {}
    value = values[0]
    ctype = value.split(";", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype):
        ctype = default
    return ctype, parse_header_params(value)


def header_map(message: Message) -> HeaderMap:
    collected: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        if isinstance(value, str):
            collected.setdefault(name.strip().lower(), []).append(_clean_raw_value(value))
    return MappingProxyType({name: tuple(values) for name, values in collected.items()})


# --- the fields intake reads -----------------------------------------------------------------


def one_line(text: str) -> str:
    """Decoded header text for display and for reply headers: an encoded-word can smuggle in
    CR/LF or NUL, which must never reach an outgoing header."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def first_value(headers: HeaderMap, name: str) -> str | None:
    values = headers.get(name)
    if not values or not values[0].strip():
        return None
    return values[0].strip()


def addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(address for _name, address in _name_address_pairs(values))


def first_address(values: tuple[str, ...]) -> tuple[str, str | None]:
    pairs = _name_address_pairs(values)
    return pairs[0] if pairs else ("", None)


def _name_address_pairs(values: tuple[str, ...]) -> list[tuple[str, str]]:
    """(decoded display name, lower-cased addr-spec); display names are decoded after the
    address parse so a decoded comma cannot split an address."""
    # No fallback to "no address" if this ever raised: a From that silently vanished would make
    # the message unanswerable and ignored; raised, the worker quarantines it for an operator.
    pairs = getaddresses(list(values))
    result: list[tuple[str, str]] = []
    for name, address in pairs:
        address = address.strip().strip("<>").strip().lower()
        if address:
            result.append((one_line(decode_header_value(name)), address))
    return result


_MSG_ID = re.compile(r"<[^<>\s]+>")


def message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = _MSG_ID.findall(value)
    return tuple(found) if found else tuple(value.split())


def date_value(value: str | None) -> datetime | None:
    """The Date header as an aware datetime; ``-0000`` ("zone unknown") is taken as UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
