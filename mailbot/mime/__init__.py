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

The modules, each one step of the way:

* :mod:`~mailbot.mime.charsets` — charset labels and the one fallback chain (bytes → text);
* :mod:`~mailbot.mime.jis` — ISO-2022-JP (CP5022x) and Windows' EUC-JP to CP932, by hand;
* :mod:`~mailbot.mime.headers` — encoded-words, parameters (RFC 2231), addresses, dates;
* :mod:`~mailbot.mime.filenames` — attachment file names, made safe for display;
* :mod:`~mailbot.mime.html_text` — an HTML body's visible text;
* :mod:`~mailbot.mime.parse` — the MIME tree walked into a :class:`ParsedMail`.

Callers import from ``mailbot.mime`` itself: what is named below is the package's surface.
"""

from mailbot.mime.charsets import decode_part_text
from mailbot.mime.filenames import safe_filename
from mailbot.mime.headers import HeaderMap, decode_header_value, parse_header_params
from mailbot.mime.html_text import html_to_text
from mailbot.mime.jis import jis_pair_to_sjis
from mailbot.mime.parse import (
    FREE_BOUNDARIES,
    MAX_BOUNDARY_CHECKS,
    MAX_NESTING,
    Attachment,
    ParsedMail,
    UnreadableMail,
    parse_headers,
    parse_mail,
)

__all__ = [
    "FREE_BOUNDARIES",
    "MAX_BOUNDARY_CHECKS",
    "MAX_NESTING",
    "Attachment",
    "HeaderMap",
    "ParsedMail",
    "UnreadableMail",
    "decode_header_value",
    "decode_part_text",
    "html_to_text",
    "jis_pair_to_sjis",
    "parse_header_params",
    "parse_headers",
    "parse_mail",
    "safe_filename",
]
