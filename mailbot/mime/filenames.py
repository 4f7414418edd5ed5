"""Attachment file names: where a part declares its name, and a safe form of it for display.

A name is only ever shown and its extension read, never used as a path
(docs/japanese-mail.md#attachment-file-names).
"""

from __future__ import annotations

import re
import unicodedata

from mailbot.mime.headers import HeaderMap, first_value, parse_header_params

MAX_FILENAME_CHARS = 255

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


def declared_filename(headers: HeaderMap) -> str | None:
    """``filename`` of Content-Disposition, else ``name`` of Content-Type (old mailers)."""
    disposition = first_value(headers, "content-disposition")
    if disposition:
        name = parse_header_params(disposition).get("filename")
        if name:
            return name
    ctype = first_value(headers, "content-type")
    if not ctype:
        return None
    return parse_header_params(ctype).get("name") or None
