"""Test-only encoders that write Japanese mail the way Windows mailers do."""

from __future__ import annotations

import base64


def _sjis_to_jis(s1: int, s2: int) -> bytes:
    if s1 >= 0xE0:
        s1 -= 0x40
    j1 = (s1 - 0x70) * 2 - 1
    if s2 >= 0x9F:
        return bytes((j1 + 1, s2 - 0x7E))
    return bytes((j1, s2 - 0x1F - (1 if s2 > 0x7F else 0)))


def to_jis(text: str) -> bytes:
    """Encode like Windows CP50220/50221: JIS X 0208 (+NEC/IBM rows) and ESC ( I kana."""
    out = bytearray()
    mode = b"\x1b(B"
    for char in text:
        raw = char.encode("cp932")
        if len(raw) == 2:
            want, data = b"\x1b$B", _sjis_to_jis(raw[0], raw[1])
        elif 0xA1 <= raw[0] <= 0xDF:
            want, data = b"\x1b(I", bytes((raw[0] - 0x80,))
        else:
            want, data = b"\x1b(B", raw
        if want != mode:
            out += want
            mode = want
        out += data
    if mode != b"\x1b(B":
        out += b"\x1b(B"
    return bytes(out)


def b_word(text: str, charset: str = "ISO-2022-JP") -> bytes:
    data = to_jis(text) if charset.upper() == "ISO-2022-JP" else text.encode(charset)
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(data) + b"?="
