"""Raw message bytes → :class:`ParsedMail`: the MIME tree walked, the body text chosen,
attachments kept (or noted as too large), the header blocks of DSNs and forwarded mail kept.

Parsing uses ``policy.compat32`` on purpose: see :mod:`mailbot.mime`. Bad input does not
raise: problems become strings in ``ParsedMail.defects``. The one exception is a structure the
stdlib parser cannot follow at all (:class:`UnreadableMail`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser
from types import MappingProxyType

from mailbot.errors import MailbotError
from mailbot.mime.charsets import decode_with_note
from mailbot.mime.filenames import declared_filename, safe_filename
from mailbot.mime.headers import (
    HeaderMap,
    addresses,
    content_type,
    date_value,
    decode_header_value,
    first_address,
    first_value,
    header_map,
    message_ids,
    one_line,
)
from mailbot.mime.html_text import html_to_text, meta_charset

MAX_NESTING = 32
"""MIME nesting deeper than this is garbage or an attack; deeper parts are dropped (defect)."""

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
    headers = header_map(message)
    collected = _Collected()
    root_type, _params = content_type(headers, message.get_default_type())
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
    headers = header_map(message)
    root_type, _params = content_type(headers, "text/plain")
    return _assemble(headers, root_type, "", False, _Collected())


def _assemble(
    headers: HeaderMap, root_type: str, text: str, from_html: bool, collected: _Collected
) -> ParsedMail:
    from_name, from_address = first_address(headers.get("from", ()))
    return ParsedMail(
        message_id=first_value(headers, "message-id"),
        subject=one_line(decode_header_value(first_value(headers, "subject") or "")),
        from_address=from_address,
        from_name=from_name,
        to_addresses=addresses(headers.get("to", ())),
        cc_addresses=addresses(headers.get("cc", ())),
        reply_to=addresses(headers.get("reply-to", ())),
        in_reply_to=next(iter(message_ids(first_value(headers, "in-reply-to"))), None),
        references=message_ids(" ".join(headers.get("references", ()))),
        date=date_value(first_value(headers, "date")),
        content_type=root_type,
        text=text,
        text_from_html=from_html,
        attachments=tuple(collected.attachments),
        defects=tuple(collected.defects),
        headers=headers,
        embedded_headers=tuple(collected.embedded),
        delivery_status=tuple(collected.status),
    )


# --- walking the tree --------------------------------------------------------------------------


def _walk(
    part: Message, headers: HeaderMap, depth: int, limit: int | None, acc: _Collected
) -> None:
    acc.defects.extend(_defect_text(defect) for defect in part.defects)
    if depth > MAX_NESTING:
        acc.defects.append(f"MIME nesting deeper than {MAX_NESTING}: inner parts dropped")
        return
    ctype, params = content_type(headers, part.get_default_type())
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
                _walk(child, header_map(child), depth + 1, limit, acc)
        return
    _leaf(part, headers, ctype, params, limit, acc)


def _defect_text(defect: object) -> str:
    detail = str(defect)
    return f"{type(defect).__name__}: {detail}" if detail else type(defect).__name__


def _status_groups(part: Message, payload: object) -> list[HeaderMap]:
    # compat32 parses message/delivery-status into one Message per field group.
    if isinstance(payload, list):
        return [header_map(group) for group in payload if isinstance(group, Message)]
    body = _payload_bytes(part)
    blocks = re.split(rb"\r?\n\r?\n", body)
    return [header_map(message_from_bytes(block, policy=policy.compat32)) for block in blocks]


def _embedded_message(
    part: Message, headers: HeaderMap, payload: Sequence[object], limit: int | None, acc: _Collected
) -> None:
    inner = next((item for item in payload if isinstance(item, Message)), None)
    if inner is None:
        return
    acc.embedded.append(header_map(inner))
    try:
        data = inner.as_bytes(policy=policy.compat32)
    except Exception as exc:  # generator on garbage: keep the fact, lose the bytes
        acc.defects.append(f"embedded message not serialisable: {type(exc).__name__}")
        data = b""
    filename = safe_filename(declared_filename(headers))
    acc.attachments.append(_attachment(filename, "message/rfc822", None, data, limit))


def _leaf(
    part: Message,
    headers: HeaderMap,
    ctype: str,
    params: dict[str, str],
    limit: int | None,
    acc: _Collected,
) -> None:
    filename = safe_filename(declared_filename(headers))
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
        acc.embedded.append(header_map(message_from_bytes(data, policy=policy.compat32)))
    acc.attachments.append(_attachment(filename, ctype, charset, data, limit))


_HEADER_BLOCK_TYPES = frozenset({"text/rfc822-headers", "message/rfc822", "message/global"})


def _attachment(
    filename: str | None, ctype: str, charset: str | None, data: bytes, limit: int | None
) -> Attachment:
    if limit is not None and len(data) > limit:
        return Attachment(filename, ctype, b"", len(data), True, charset)
    return Attachment(filename, ctype, data, len(data), False, charset)


def _is_body_text(headers: HeaderMap, ctype: str, filename: str | None) -> bool:
    disposition = (first_value(headers, "content-disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment" or filename is not None:
        return False
    # A multipart whose boundary is missing arrives as a leaf: its text is still the body.
    return ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")


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
    cte = (first_value(headers, "content-transfer-encoding") or "").lower()
    if cte == "base64":
        significant = len(re.sub(r"[^A-Za-z0-9+/]", "", payload))
        return significant * 3 // 4
    return len(payload)


def _body_part(part: Message, ctype: str, params: dict[str, str], acc: _Collected) -> None:
    data = _payload_bytes(part)
    charset = params.get("charset")
    if ctype == "text/html" and not charset:
        charset = meta_charset(data)
    text, note = decode_with_note(data, charset)
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
