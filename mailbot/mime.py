"""Raw message bytes → :class:`ParsedMail`, with the fallback chain of docs/japanese-mail.md.

Parsing uses ``policy.compat32`` on purpose: it never decodes anything behind our back. Under
``policy.default`` header access decodes lazily and may raise, silently turns CP50220
characters (髙, ①, ㈱) into U+FFFD, leaves ISO-2022-JP encoded-words undecoded without a
defect, and ``get_filename()`` can raise ``UnicodeDecodeError`` on RFC 2231 ISO-2022-JP
continuations. With compat32 we get the raw header strings (8-bit bytes surrogate-escaped)
and raw payload bytes, and do every charset decision here, once, with one chain.

Bad input does not raise: problems become strings in ``ParsedMail.defects``. The one
exception is a structure the stdlib parser cannot follow at all (:class:`UnreadableMail`).
HTML is never rendered: it is reduced to text with the stdlib ``html.parser``.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

from mailbot.errors import MailbotError

HeaderMap = Mapping[str, tuple[str, ...]]
"""Lower-case header name → every value in message order (unfolded, encoded-words kept)."""

MAX_NESTING = 32
"""MIME nesting deeper than this is garbage or an attack; deeper parts are dropped (defect)."""

MAX_FILENAME_CHARS = 255

MAX_BOUNDARY_CHECKS = 10_000_000
"""Lines × multipart boundaries above which a message with more than FREE_BOUNDARIES of them
is not handed to the stdlib parser (UnreadableMail).

The parser tests every line against the boundary of every multipart enclosing it: a part
nested 800 deep holding 100 KB of short lines costs it 3 s, and 10 MB of them many minutes of
the worker's time, with the claiming transaction open. The number of boundary declarations
bounds the nesting. Up to FREE_BOUNDARIES the extra cost stays under the cost of reading the
lines at all, so such mail is never refused; beyond, the bound keeps the extra under about 2 s.
A real mail is far inside it: 10 MB of base64 (76-character lines) is 140,000 lines, so even
70 multiparts in a 10 MB mail pass."""
FREE_BOUNDARIES = 8
_BOUNDARY_PARAMETER = re.compile(rb"boundary[\s*0-9]*=", re.IGNORECASE)

# ---------------------------------------------------------------------------------------------
# Charset labels
# ---------------------------------------------------------------------------------------------

# Every label Japanese mailers use for ISO-2022-JP. All of them may carry CP50220 characters,
# so all go through our own JIS → Shift_JIS → cp932 conversion.
_JIS_LABELS = frozenset(
    {
        "iso-2022-jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-jp-2004",
        "iso-2022-jp-ms", "csiso2022jp", "iso2022jp", "cp50220", "cp50221", "cp50222", "jis",
        "x-jis",
    }
)  # fmt: skip
# Shift_JIS by any name means CP932 in practice: Python's shift_jis codec rejects NEC/IBM
# extensions and maps 0x8160 to 〜 (U+301C) where Windows gives ～ (U+FF5E).
_SJIS_LABELS = frozenset(
    {
        "shift-jis", "shiftjis", "sjis", "x-sjis", "s-jis", "ms-kanji", "csshiftjis",
        "windows-31j", "cswindows31j", "ms932", "cp932", "x-ms-cp932", "ibm-943",
    }
)  # fmt: skip
_EUC_LABELS = frozenset({"euc-jp", "eucjp", "x-euc-jp", "cp51932", "euc-jp-ms", "eucjp-ms"})
_ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi-x3.4-1968", "iso646-us", "csascii"})
# Labels that say "I don't know": same as no label.
_UNKNOWN_LABELS = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "default", "8bit"})
_UTF8_LABELS = frozenset({"utf-8", "utf8"})

# A JIS designation that only ISO-2022-JP text contains; ESC ( B alone proves nothing.
_JIS_DESIGNATION = re.compile(rb"\x1b(?:\$[@B]|\$\([@BDOPQ]|\([IJ])")

_FEW_REPLACEMENTS = 0.1
"""U+FFFD per correctly decoded non-ASCII character up to which a damaged text (a cut-off
mail, one stray byte) is still read in that charset. Text in the wrong multibyte charset
decodes to almost nothing but U+FFFD, so it stays far above this."""


def _normalise_label(label: str | None) -> str:
    if not label:
        return ""
    return label.strip().strip("\"'").strip().lower().replace("_", "-")


def decode_part_text(payload: bytes, declared_charset: str | None) -> str:
    """Decode body or header bytes to text with the chain of docs/japanese-mail.md#charsets.

    Never raises; the last resorts keep every byte (latin-1) rather than fail.
    """
    return _decode_text(payload, declared_charset)[0]


def _decode_text(payload: bytes, declared_charset: str | None) -> tuple[str, str | None]:
    """Decoded text plus a note when the declared charset was not what the bytes were."""
    label = _normalise_label(declared_charset)
    if label in _JIS_LABELS:
        return _decode_labelled_jis(payload, label)
    if label in _SJIS_LABELS:
        return _decode_with_fallback(payload, "cp932", label)
    if label in _EUC_LABELS:
        return _decode_euc(payload)
    if label in _UNKNOWN_LABELS:
        return _guess(payload), None
    if _JIS_DESIGNATION.search(payload) and (label in _ASCII_LABELS or label in _UTF8_LABELS):
        # Old mailers send raw JIS under us-ascii (ESC is ASCII, so "strict" would pass).
        return _decode_jis(payload), f"charset {label} carried ISO-2022-JP escapes"
    codec = "utf-8-sig" if label in _UTF8_LABELS else label  # drop a BOM, if any
    return _decode_with_fallback(payload, codec, label)


def _decode_labelled_jis(payload: bytes, label: str) -> tuple[str, str | None]:
    if b"\x1b" in payload:
        return _decode_jis(payload), None
    if payload.isascii():
        return payload.decode("ascii"), None
    # Labelled ISO-2022-JP but 8-bit and escape-free: a mailer that labels UTF-8 (or CP932)
    # as ISO-2022-JP.
    text = _guess(payload)
    return text, f"charset {label} carried 8-bit data without JIS escapes"


def _decode_with_fallback(payload: bytes, codec: str, label: str) -> tuple[str, str | None]:
    try:
        return payload.decode(codec), None
    except LookupError:
        return _guess(payload), f"unknown charset {label!r}"
    except (UnicodeError, ValueError):
        pass
    damaged = _decode_nearly_clean(payload, codec)
    if damaged is not None:
        return damaged, f"invalid {label} bytes replaced"
    # The label lied (Outlook says utf-8 or us-ascii and sends CP932, …).
    return _guess(payload, codec), f"bytes are not {label}"


def _guess(payload: bytes, declared_codec: str | None = None) -> str:
    """No (usable) label: JIS escapes → UTF-8 → CP932 (each strict, then nearly clean) →
    the declared codec with replacement → charset-normalizer → latin-1 (keeps every byte)."""
    if _JIS_DESIGNATION.search(payload):
        return _decode_jis(payload)
    if payload.isascii():
        return payload.decode("ascii")
    for codec in ("utf-8-sig", "cp932"):
        try:
            return payload.decode(codec)
        except UnicodeDecodeError:
            pass
        text = _decode_nearly_clean(payload, codec)
        if text is not None:
            return text
    if declared_codec is not None:
        try:
            return payload.decode(declared_codec, errors="replace")
        except (UnicodeError, ValueError):  # exotic codecs (idna, undefined) refuse "replace"
            pass
    return _normalizer_guess(payload) or payload.decode("latin-1")


def _decode_nearly_clean(payload: bytes, codec: str) -> str | None:
    """``payload`` decoded with replacement if only a few characters were broken."""
    try:
        text = payload.decode(codec, errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return None
    bad = text.count("\ufffd")
    good = sum(1 for char in text if ord(char) > 0x7F) - bad
    return text if bad <= good * _FEW_REPLACEMENTS else None


def _normalizer_guess(payload: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes  # imported lazily: rarely needed, slow

        best = from_bytes(payload).best()
        return None if best is None else str(best)
    except Exception:  # a guesser must never take the message down with it
        return None


# ---------------------------------------------------------------------------------------------
# ISO-2022-JP (CP50220/50221/50222) — hand-written.
#
# Python's iso2022_jp* codecs reject NEC row 13 and the NEC-selected IBM extensions (①, Ⅰ, ㈱,
# 髙, 﨑) that Windows sends under this label, and `cp50220` does not exist. JIS X 0208 rows map
# 1:1 onto Shift_JIS, and CP932 holds all those extensions, so we rewrite every two-byte JIS
# code to Shift_JIS arithmetically and let the cp932 codec do the rest.
# ---------------------------------------------------------------------------------------------

_ASCII, _JIS0208, _KANA = 0, 1, 2

# Escape sequence → mode. ESC ( J (JIS-Roman) is read as ASCII, as Windows does (¥ stays \).
_ESCAPES: dict[bytes, int] = {
    b"\x1b(B": _ASCII,
    b"\x1b(J": _ASCII,
    b"\x1b(H": _ASCII,
    b"\x1b(I": _KANA,
    b"\x1b$@": _JIS0208,
    b"\x1b$B": _JIS0208,
    b"\x1b$(B": _JIS0208,
    b"\x1b$(@": _JIS0208,
}
# Sets CP932 cannot hold: hand the segment to the Python codec that knows them.
_FOREIGN_ESCAPES: dict[bytes, str] = {
    b"\x1b$(D": "iso2022_jp_2",  # JIS X 0212
    b"\x1b$A": "iso2022_jp_2",  # GB 2312
    b"\x1b$(C": "iso2022_jp_2",  # KS C 5601
    b"\x1b$(O": "iso2022_jp_3",  # JIS X 0213:2000 plane 1
    b"\x1b$(Q": "iso2022_jp_2004",  # JIS X 0213:2004 plane 1
    b"\x1b$(P": "iso2022_jp_2004",  # JIS X 0213 plane 2
}
# An ISO 2022 escape sequence (ESC, intermediates 0x20–0x2F, final 0x30–0x7E), or SO/SI, with
# which CP50222 shifts into half-width kana.
_SHIFT_OR_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]?|[\x0e\x0f]")
_SO, _SI = b"\x0e", b"\x0f"
_NON_GRAPHIC_RUN = re.compile(rb"([^\x21-\x7e]+)")


def _sjis_lead(j1: int) -> int:
    s1 = ((j1 + 1) >> 1) + 0x70
    return s1 + 0x40 if s1 >= 0xA0 else s1


def _sjis_trail(j1: int, j2: int) -> int:
    if j1 & 1:
        return j2 + 0x1F + (1 if j2 + 0x1F >= 0x7F else 0)
    return j2 + 0x7E


def jis_pair_to_sjis(j1: int, j2: int) -> bytes:
    """One JIS X 0208 code (two bytes 0x21–0x7E) as Shift_JIS/CP932 bytes."""
    return bytes((_sjis_lead(j1), _sjis_trail(j1, j2)))


# Translation tables, so a kanji run converts in C, not one Python step per character (a
# multi-megabyte ISO-2022-JP body must not stall the worker). Only 0x21–0x7E entries are used.
_LEAD = bytes(_sjis_lead(b) & 0xFF for b in range(256))
_TRAIL_ODD = bytes(_sjis_trail(1, b) & 0xFF for b in range(256))
_TRAIL_EVEN = bytes(_sjis_trail(0, b) & 0xFF for b in range(256))
_ODD_MASK = bytes(0xFF if b & 1 else 0 for b in range(256))
_KANA_TO_SJIS = bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))


def _jis_run_to_sjis(run: bytes) -> bytes:
    """An even-length run of JIS X 0208 bytes as CP932 bytes.

    The lead byte depends on the first byte only; the trail byte on the second and the first's
    parity. Both are table look-ups, and the two trail candidates are merged with a parity mask
    (as big integers), so the whole run is converted without a per-character loop.
    """
    first, second = run[0::2], run[1::2]
    size = len(first)
    mask = int.from_bytes(first.translate(_ODD_MASK), "big")
    odd = int.from_bytes(second.translate(_TRAIL_ODD), "big")
    even = int.from_bytes(second.translate(_TRAIL_EVEN), "big")
    trail = (odd & mask) | (even & ~mask & ((1 << (8 * size)) - 1))
    out = bytearray(2 * size)
    out[0::2] = first.translate(_LEAD)
    out[1::2] = trail.to_bytes(size, "big")
    return bytes(out)


class _JisDecoder:
    """ISO-2022-JP state: text between escape sequences is converted to CP932 bytes, which are
    decoded with the cp932 codec in as long runs as possible."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.sjis = bytearray()
        self.mode = _ASCII
        self.foreign: bytes | None = None  # designation of a set CP932 lacks
        self.shifted = False

    def control(self, sequence: bytes) -> None:
        if sequence in (_SO, _SI):
            self.shifted = sequence == _SO
        elif sequence in _ESCAPES:
            self.mode, self.foreign = _ESCAPES[sequence], None
        elif sequence in _FOREIGN_ESCAPES:
            self.foreign = sequence
        # Anything else (ESC & @ revision announcer, G2 designations, …) is dropped whole.

    def segment(self, data: bytes) -> None:
        if not data:
            return
        if self.foreign is not None:
            self._flush()
            chunk = self.foreign + data + b"\x1b(B"
            self.out.append(chunk.decode(_FOREIGN_ESCAPES[self.foreign], errors="replace"))
        elif self.shifted or self.mode == _KANA:
            self.sjis += data.translate(_KANA_TO_SJIS)
        elif self.mode == _ASCII:
            self.sjis += data  # 8-bit bytes here are raw Shift_JIS some mailers mix in
        else:
            for index, piece in enumerate(_NON_GRAPHIC_RUN.split(data)):
                if index % 2:
                    self.sjis += piece  # line ends and spaces inside a kanji run pass through
                else:
                    self._kanji(piece)

    def _kanji(self, run: bytes) -> None:
        whole = len(run) - len(run) % 2
        self.sjis += _jis_run_to_sjis(run[:whole])
        if whole < len(run):
            self._flush()
            self.out.append("\ufffd")  # half a character: the other byte was lost in transit

    def _flush(self) -> None:
        if self.sjis:
            self.out.append(bytes(self.sjis).decode("cp932", errors="replace"))
            self.sjis.clear()

    def result(self) -> str:
        self._flush()
        return "".join(self.out)


def _decode_jis(payload: bytes) -> str:
    decoder = _JisDecoder()
    position = 0
    for match in _SHIFT_OR_ESCAPE.finditer(payload):
        decoder.segment(payload[position : match.start()])
        decoder.control(match.group())
        position = match.end()
    decoder.segment(payload[position:])
    return decoder.result()


def _euc_to_sjis(data: bytes) -> bytes:
    """EUC-JP (CP51932: NEC row 13 included) → CP932 bytes; JIS X 0212 becomes 〓."""
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        nxt = data[i + 1] if i + 1 < len(data) else 0
        if byte == 0x8E and 0xA1 <= nxt <= 0xDF:  # half-width kana
            out.append(nxt)
            i += 2
        elif byte == 0x8F:  # JIS X 0212: not in CP932
            out += b"\x81\xac"
            i += 3
        elif 0xA1 <= byte <= 0xFE and 0xA1 <= nxt <= 0xFE:
            out += jis_pair_to_sjis(byte & 0x7F, nxt & 0x7F)
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def _decode_euc(payload: bytes) -> tuple[str, str | None]:
    try:
        return payload.decode("euc_jp"), None
    except UnicodeDecodeError:
        # Windows' EUC (CP51932) carries NEC extensions Python's euc_jp rejects.
        return _euc_to_sjis(payload).decode("cp932", errors="replace"), None


# ---------------------------------------------------------------------------------------------
# Headers: RFC 2047 encoded-words, raw 8-bit values, parameters (RFC 2231)
# ---------------------------------------------------------------------------------------------

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
    return _normalise_label(a) == _normalise_label(b)


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


def _content_type(headers: HeaderMap, default: str) -> tuple[str, dict[str, str]]:
    values = headers.get("content-type")
    if not values:
        return default, {}
    value = values[0]
    ctype = value.split(";", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype):
        ctype = default
    return ctype, parse_header_params(value)


def _header_map(message: Message) -> HeaderMap:
    collected: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        if isinstance(value, str):
            collected.setdefault(name.strip().lower(), []).append(_clean_raw_value(value))
    return MappingProxyType({name: tuple(values) for name, values in collected.items()})


# ---------------------------------------------------------------------------------------------
# File names
# ---------------------------------------------------------------------------------------------

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def safe_filename(name: str | None) -> str | None:
    """A mail-supplied file name fit for display and extension checks — never for a path.

    Drops directories (``C:\\Users\\…\\申込書.csv`` → ``申込書.csv``), control and bidi
    characters (``…\u202etxt.exe`` spoofing), NFC-normalises (macOS sends decomposed ﾞ/ﾟ),
    and caps the length keeping the extension. ``.``/``..``/empty become None.
    """
    if name is None:
        return None
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        char for char in name if unicodedata.category(char) != "Cc" and char not in _BIDI_CONTROLS
    )
    name = re.split(r"[/\\]", name)[-1].strip()
    if name in ("", ".", ".."):
        return None
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name


# ---------------------------------------------------------------------------------------------
# HTML → text (stdlib html.parser; nothing is rendered or fetched)
# ---------------------------------------------------------------------------------------------

_SKIPPED_TAGS = frozenset({"script", "style", "title", "template", "noscript"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tr", "ul",
    }
)  # fmt: skip
_HTML_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.cells_in_row = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
            self.cells_in_row = 0
        elif tag in ("td", "th"):
            # A tab between cells: a form pasted as a table ("label" | "value") reads as the
            # body parser's "label<TAB>value", as from a spreadsheet.
            self.parts.append("\t" if self.cells_in_row else " ")
            self.cells_in_row += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        self.parts.append(data if self.pre_depth else _HTML_SPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: scripts/styles dropped, blocks as lines, entities decoded."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
        text = "".join(extractor.parts)
    except Exception:  # html.parser has asserted on odd markup in the past; fall back crudely
        text = re.sub(r"<[^>]*>", " ", html)
    lines = (line.replace("\xa0", " ").strip(" \t") for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)


# ---------------------------------------------------------------------------------------------
# The parsed mail
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """One non-body part. ``payload`` is empty when ``truncated`` (over the size limit);
    ``size`` is then estimated from the encoded length (exact when loaded)."""

    filename: str | None
    content_type: str
    payload: bytes
    size: int
    truncated: bool = False
    charset: str | None = None  # declared charset parameter, for text/csv readers


@dataclass(frozen=True)
class ParsedMail:
    """What intake needs of one message. Addresses are lower-cased addr-specs.

    ``headers`` keeps raw values (unfolded, encoded-words not decoded, 8-bit bytes decoded);
    ``header(name)`` gives the first value fully decoded. ``embedded_headers`` are the header
    blocks of message/rfc822 and text/rfc822-headers parts, ``delivery_status`` the field
    groups of message/delivery-status parts (DSNs), for bounce handling.
    """

    message_id: str | None
    subject: str
    from_address: str | None
    from_name: str
    to_addresses: tuple[str, ...]
    cc_addresses: tuple[str, ...]
    reply_to: tuple[str, ...]
    in_reply_to: str | None
    references: tuple[str, ...]
    date: datetime | None
    content_type: str
    text: str
    text_from_html: bool
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    headers: HeaderMap = field(default_factory=lambda: MappingProxyType({}), hash=False)
    embedded_headers: tuple[HeaderMap, ...] = field(default=(), hash=False)
    delivery_status: tuple[HeaderMap, ...] = field(default=(), hash=False)

    def header(self, name: str) -> str | None:
        """First value of ``name`` (any case), encoded-words decoded; None when absent."""
        values = self.headers.get(name.lower())
        return decode_header_value(values[0]) if values else None

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every raw value of ``name`` (any case), in message order."""
        return self.headers.get(name.lower(), ())


@dataclass
class _Collected:
    """Mutable accumulator while walking the MIME tree."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    embedded: list[HeaderMap] = field(default_factory=list)
    status: list[HeaderMap] = field(default_factory=list)


class UnreadableMail(MailbotError):
    """A message whose MIME structure the parser cannot read at all (parts nested deeper than
    Python's parser can follow). The worker quarantines it, raw bytes kept, and tells a known
    sender; the fix is on the sender's side (send the form as plain text or one attachment)."""


def parse_mail(raw: bytes, *, max_attachment_bytes: int | None = None) -> ParsedMail:
    """Parse raw message bytes. Damage is reported in ``defects``, never raised, except a
    structure nobody can read: :class:`UnreadableMail`. Anything else that escapes is a bug,
    and the worker's loop boundary quarantines the message with it (mailbot.worker).

    Attachments larger than ``max_attachment_bytes`` (decoded size, estimated from the
    encoded size so an oversize part is never decoded) are kept as metadata with
    ``truncated=True`` and an empty payload, so the sender can be told which file was too big.
    """
    _check_parser_work(raw)
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
    except RecursionError:
        # The stdlib parser recurses once per nesting level and gives up near a thousand;
        # beyond MAX_NESTING nothing would be read anyway.
        raise UnreadableMail(
            "the message's MIME parts are nested too deeply for the parser to read "
            f"(more than a few hundred levels; mailbot reads {MAX_NESTING})"
        ) from None
    headers = _header_map(message)
    collected = _Collected()
    root_type, _params = _content_type(headers, message.get_default_type())
    _walk(message, headers, 0, max_attachment_bytes, collected)
    text, from_html = _body_text(collected)
    return _assemble(headers, root_type, text, from_html, collected)


def _check_parser_work(raw: bytes) -> None:
    boundaries = len(_BOUNDARY_PARAMETER.findall(raw))
    if boundaries <= FREE_BOUNDARIES:
        return
    lines = raw.count(b"\n") + 1
    if lines * boundaries > MAX_BOUNDARY_CHECKS:
        raise UnreadableMail(
            f"the message declares {boundaries:,} multipart boundaries over {lines:,} lines, "
            f"more than the parser is allowed to work through ({MAX_BOUNDARY_CHECKS:,} "
            "line × boundary checks): deep nesting with many short lines, an attack on the parser"
        )


def parse_headers(raw: bytes) -> ParsedMail:
    """The header block alone, body and parts left unread: what can still be known of a
    message whose body could not be parsed (to tell its sender so, mailbot.intake)."""
    message = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    headers = _header_map(message)
    root_type, _params = _content_type(headers, "text/plain")
    return _assemble(headers, root_type, "", False, _Collected())


def _assemble(
    headers: HeaderMap, root_type: str, text: str, from_html: bool, collected: _Collected
) -> ParsedMail:
    from_name, from_address = _first_address(headers.get("from", ()))
    return ParsedMail(
        message_id=_first(headers, "message-id"),
        subject=_one_line(decode_header_value(_first(headers, "subject") or "")),
        from_address=from_address,
        from_name=from_name,
        to_addresses=_addresses(headers.get("to", ())),
        cc_addresses=_addresses(headers.get("cc", ())),
        reply_to=_addresses(headers.get("reply-to", ())),
        in_reply_to=next(iter(_message_ids(_first(headers, "in-reply-to"))), None),
        references=_message_ids(" ".join(headers.get("references", ()))),
        date=_parse_date(_first(headers, "date")),
        content_type=root_type,
        text=text,
        text_from_html=from_html,
        attachments=tuple(collected.attachments),
        defects=tuple(collected.defects),
        headers=headers,
        embedded_headers=tuple(collected.embedded),
        delivery_status=tuple(collected.status),
    )


def _one_line(text: str) -> str:
    """Decoded header text for display and for reply headers: an encoded-word can smuggle in
    CR/LF or NUL, which must never reach an outgoing header."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def _first(headers: HeaderMap, name: str) -> str | None:
    values = headers.get(name)
    if not values or not values[0].strip():
        return None
    return values[0].strip()


def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(address for _name, address in _name_address_pairs(values))


def _first_address(values: tuple[str, ...]) -> tuple[str, str | None]:
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
            result.append((_one_line(decode_header_value(name)), address))
    return result


_MSG_ID = re.compile(r"<[^<>\s]+>")


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = _MSG_ID.findall(value)
    return tuple(found) if found else tuple(value.split())


def _parse_date(value: str | None) -> datetime | None:
    """The Date header as an aware datetime; ``-0000`` ("zone unknown") is taken as UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Walking the tree
# ---------------------------------------------------------------------------------------------


def _walk(
    part: Message, headers: HeaderMap, depth: int, limit: int | None, acc: _Collected
) -> None:
    acc.defects.extend(_defect_text(defect) for defect in part.defects)
    if depth > MAX_NESTING:
        acc.defects.append(f"MIME nesting deeper than {MAX_NESTING}: inner parts dropped")
        return
    ctype, params = _content_type(headers, part.get_default_type())
    # get_payload() without decode=True is only called on multiparts (a list): on a text part
    # compat32 decodes with the declared charset and raises on a label like "x\0".
    payload = part.get_payload() if part.is_multipart() else None
    if ctype == "message/delivery-status":
        acc.status.extend(_status_groups(part, payload))
        return
    if isinstance(payload, list):
        if ctype.startswith("message/"):
            _embedded_message(part, headers, payload, limit, acc)
            return
        for child in payload:
            if isinstance(child, Message):
                _walk(child, _header_map(child), depth + 1, limit, acc)
        return
    _leaf(part, headers, ctype, params, limit, acc)


def _defect_text(defect: object) -> str:
    detail = str(defect)
    return f"{type(defect).__name__}: {detail}" if detail else type(defect).__name__


def _status_groups(part: Message, payload: object) -> list[HeaderMap]:
    # compat32 parses message/delivery-status into one Message per field group.
    if isinstance(payload, list):
        return [_header_map(group) for group in payload if isinstance(group, Message)]
    body = _payload_bytes(part)
    blocks = re.split(rb"\r?\n\r?\n", body)
    return [_header_map(message_from_bytes(block, policy=policy.compat32)) for block in blocks]


def _embedded_message(
    part: Message, headers: HeaderMap, payload: Sequence[object], limit: int | None, acc: _Collected
) -> None:
    inner = next((item for item in payload if isinstance(item, Message)), None)
    if inner is None:
        return
    acc.embedded.append(_header_map(inner))
    try:
        data = inner.as_bytes(policy=policy.compat32)
    except Exception as exc:  # generator on garbage: keep the fact, lose the bytes
        acc.defects.append(f"embedded message not serialisable: {type(exc).__name__}")
        data = b""
    filename = safe_filename(_filename(headers))
    acc.attachments.append(_attachment(filename, "message/rfc822", None, data, limit))


def _leaf(
    part: Message,
    headers: HeaderMap,
    ctype: str,
    params: dict[str, str],
    limit: int | None,
    acc: _Collected,
) -> None:
    filename = safe_filename(_filename(headers))
    if _is_body_text(headers, ctype, filename):
        _body_part(part, ctype, params, acc)
        return
    charset = params.get("charset")
    estimate = _estimated_size(part, headers)
    if limit is not None and estimate > limit:
        acc.attachments.append(Attachment(filename, ctype, b"", estimate, True, charset))
        return
    data = _payload_bytes(part)
    if ctype in _HEADER_BLOCK_TYPES:
        # A DSN's copy of the original (or a message/rfc822 the parser left as text).
        acc.embedded.append(_header_map(message_from_bytes(data, policy=policy.compat32)))
    acc.attachments.append(_attachment(filename, ctype, charset, data, limit))


_HEADER_BLOCK_TYPES = frozenset({"text/rfc822-headers", "message/rfc822", "message/global"})


def _attachment(
    filename: str | None, ctype: str, charset: str | None, data: bytes, limit: int | None
) -> Attachment:
    if limit is not None and len(data) > limit:
        return Attachment(filename, ctype, b"", len(data), True, charset)
    return Attachment(filename, ctype, data, len(data), False, charset)


def _is_body_text(headers: HeaderMap, ctype: str, filename: str | None) -> bool:
    disposition = (_first(headers, "content-disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment" or filename is not None:
        return False
    # A multipart whose boundary is missing arrives as a leaf: its text is still the body.
    return ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")


def _filename(headers: HeaderMap) -> str | None:
    """``filename`` of Content-Disposition, else ``name`` of Content-Type (old mailers)."""
    disposition = _first(headers, "content-disposition")
    if disposition:
        name = parse_header_params(disposition).get("filename")
        if name:
            return name
    ctype = _first(headers, "content-type")
    if not ctype:
        return None
    return parse_header_params(ctype).get("name") or None


def _payload_bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _estimated_size(part: Message, headers: HeaderMap) -> int:
    """Decoded size without decoding: exact for base64, about the size otherwise; 0 when
    unknown (the part is then decoded and measured)."""
    try:
        payload = part.get_payload()
    except Exception:  # compat32 decodes 8-bit text with the declared charset; see _walk
        return 0
    if not isinstance(payload, str):
        return 0
    cte = (_first(headers, "content-transfer-encoding") or "").lower()
    if cte == "base64":
        significant = len(re.sub(r"[^A-Za-z0-9+/]", "", payload))
        return significant * 3 // 4
    return len(payload)


def _body_part(part: Message, ctype: str, params: dict[str, str], acc: _Collected) -> None:
    data = _payload_bytes(part)
    charset = params.get("charset")
    if ctype == "text/html" and not charset:
        meta = _META_CHARSET.search(data[:4096])
        charset = meta.group(1).decode("ascii") if meta else None
    text, note = _decode_text(data, charset)
    if note:
        acc.defects.append(f"{ctype}: {note}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if ctype == "text/html":
        acc.html.append(html_to_text(text))
        return
    if params.get("format", "").lower() == "flowed":
        text = _unflow(text, delsp=params.get("delsp", "").lower() == "yes")
    acc.plain.append(text)


def _body_text(acc: _Collected) -> tuple[str, bool]:
    plain = "\n".join(acc.plain)
    if plain.strip() or not acc.html:
        return plain, False
    return "\n".join(acc.html), True


def _unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (Thunderbird), keeping quote depth."""
    out: list[str] = []
    current: str | None = None
    current_depth = 0
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        content = stripped[1:] if stripped.startswith(" ") else stripped  # space-stuffing
        soft = content.endswith(" ") and content != "-- "
        if soft and delsp:
            content = content[:-1]
        if current is not None and depth == current_depth:
            current += content
        else:
            if current is not None:
                out.append(_quoted(current, current_depth))
            current, current_depth = content, depth
        if not soft:
            out.append(_quoted(current, current_depth))
            current = None
    if current is not None:
        out.append(_quoted(current, current_depth))
    return "\n".join(out)


def _quoted(text: str, depth: int) -> str:
    return (">" * depth + " " + text) if depth else text
