"""Charset labels and the one fallback chain that turns body or header bytes into text.

A label is believed as far as the bytes allow: every ISO-2022-JP label goes through the
hand-written JIS conversion (:mod:`mailbot.mime.jis`), Shift_JIS by any name is read as CP932,
a missing or "unknown" label is guessed, and a label the bytes contradict is noted and guessed
past (docs/japanese-mail.md#charsets). Nothing here raises on bad input.
"""

from __future__ import annotations

import re

from mailbot.mime.jis import decode_euc, decode_jis

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


def normalise_label(label: str | None) -> str:
    if not label:
        return ""
    return label.strip().strip("\"'").strip().lower().replace("_", "-")


def decode_part_text(payload: bytes, declared_charset: str | None) -> str:
    """Decode body or header bytes to text with the chain of docs/japanese-mail.md#charsets.

    Never raises; the last resorts keep every byte (latin-1) rather than fail.
    """
    return decode_with_note(payload, declared_charset)[0]


def decode_with_note(payload: bytes, declared_charset: str | None) -> tuple[str, str | None]:
    """Decoded text plus a note when the declared charset was not what the bytes were."""
    label = normalise_label(declared_charset)
    if label in _JIS_LABELS:
        return _decode_labelled_jis(payload, label)
    if label in _SJIS_LABELS:
        return _decode_with_fallback(payload, "cp932", label)
    if label in _EUC_LABELS:
        return decode_euc(payload)
    if label in _UNKNOWN_LABELS:
        return _guess(payload), None
    if _JIS_DESIGNATION.search(payload) and (label in _ASCII_LABELS or label in _UTF8_LABELS):
        # Old mailers send raw JIS under us-ascii (ESC is ASCII, so "strict" would pass).
        return decode_jis(payload), f"charset {label} carried ISO-2022-JP escapes"
    codec = "utf-8-sig" if label in _UTF8_LABELS else label  # drop a BOM, if any
    return _decode_with_fallback(payload, codec, label)


def _decode_labelled_jis(payload: bytes, label: str) -> tuple[str, str | None]:
    if b"\x1b" in payload:
        return decode_jis(payload), None
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
        return decode_jis(payload)
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
