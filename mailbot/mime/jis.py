"""JIS codes to CP932, by hand: ISO-2022-JP as Windows sends it (CP50220/50221/50222) and
EUC-JP from Windows (CP51932).

Python's iso2022_jp* codecs reject NEC row 13 and the NEC-selected IBM extensions (①, Ⅰ, ㈱,
髙, 﨑) that Windows sends under this label, and ``cp50220`` does not exist. JIS X 0208 rows map
1:1 onto Shift_JIS, and CP932 holds all those extensions, so every two-byte JIS code is
rewritten to Shift_JIS arithmetically and the cp932 codec does the rest
(docs/japanese-mail.md#charsets).
"""

from __future__ import annotations

import re

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


def decode_jis(payload: bytes) -> str:
    """ISO-2022-JP bytes of any variant as text; never raises (a lost byte becomes U+FFFD)."""
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


def decode_euc(payload: bytes) -> tuple[str, str | None]:
    """EUC-JP bytes as text (no note: the label was right); never raises."""
    try:
        return payload.decode("euc_jp"), None
    except UnicodeDecodeError:
        # Windows' EUC (CP51932) carries NEC extensions Python's euc_jp rejects.
        return _euc_to_sjis(payload).decode("cp932", errors="replace"), None
