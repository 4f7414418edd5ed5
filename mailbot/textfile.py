"""Reading operator files (registry CSV, schedule) as Japanese offices save them."""

from __future__ import annotations

from pathlib import Path

from mailbot.errors import ImportFileError


def read_text_japanese(path: Path) -> str:
    """UTF-8 (with or without BOM) first, then CP932, as Japanese Excel writes "CSV"."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(str(path), None, f"cannot read the file: {exc.strerror}") from None
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError(str(path), None, "the file is neither UTF-8 nor CP932 (Shift_JIS) text")
