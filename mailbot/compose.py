"""Render one outgoing message to bytes, once: the outbox stores and sends exactly these bytes.

Japanese business mail, written the way every current mailer reads it:

- Body ``text/plain; charset=utf-8`` in base64. ISO-2022-JP was the old convention, but it
  cannot carry ㈱ ① 髙 (see docs/japanese-mail.md) and UTF-8 is read fine by all current Japanese
  mailers (Outlook, Thunderbird, Becky!, Gmail, iOS/Android mail). base64 rather than
  quoted-printable because Japanese text is about a third the size that way, and rather than
  8bit because relays on the way are not all 8BITMIME.
- Subject and display names RFC 2047 encoded, attachment names RFC 2231 encoded, all of it
  when each header is set, so the writer has nothing left to fold but long lines.
- RFC 3834 for an automatic sender: ``Auto-Submitted`` on every message, no ``Precedence``
  (RFC 3834 section 5 advises against it); ``X-Auto-Response-Suppress: All`` keeps Exchange
  out-of-office replies from answering us.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr

from mailbot.config import Settings
from mailbot.errors import MailbotError

AUTO_GENERATED = "auto-generated"
AUTO_REPLIED = "auto-replied"
AUTO_SUBMITTED_VALUES = (AUTO_GENERATED, AUTO_REPLIED)

# A message id as it may stand between angle brackets: printable ASCII, no space, no brackets.
_ID_CHARS = re.compile(r"^[!-;=?-~]+$")  # 0x21–0x7E without "<" (0x3C) and ">" (0x3E)
# A thread of hundreds of messages would make References huge; keep the root and the most
# recent ones, as RFC 5322 section 3.6.4 allows ("may" shorten) and common mailers do.
MAX_REFERENCES = 20

# (file name, content type such as "text/csv", content)
Attachment = tuple[str, str, bytes]


class ComposeError(MailbotError):
    """The message cannot be built (a bad address or header value); nothing was queued."""


@dataclass(frozen=True)
class ComposedMail:
    message_id: str  # with angle brackets, exactly as in the Message-ID header
    subject: str  # decoded, as shown to the recipient (prefix included)
    raw: bytes  # the wire form, CRLF line ends, 7-bit clean


def normalize_message_id(value: str) -> str | None:
    """``<id>`` for a usable message id (with or without brackets), else None."""
    bare = value.strip().removeprefix("<").removesuffix(">").strip()
    return f"<{bare}>" if bare and _ID_CHARS.match(bare) else None


def new_message_id(kind: str, domain: str) -> str:
    """``<kind.uuid@domain>``: unique, ours (the domain), and telling in a log at a glance."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", kind).strip("-") or "mail"
    return f"<{label}.{uuid.uuid4().hex}@{domain}>"


def compose(
    settings: Settings,
    *,
    to: str,
    to_name: str | None,
    subject: str,
    body: str,
    kind: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    auto_submitted: str = AUTO_REPLIED,
    now: datetime,
    message_id: str | None = None,
) -> ComposedMail:
    """Build the message once; the caller stores ``raw`` and ``message_id`` in the outbox.

    ``settings.subject_prefix`` is put in front of ``subject`` unless it is already there.
    ``in_reply_to`` is appended to ``references`` when missing (RFC 5322 threading). Unusable
    ids from inbound mail are dropped rather than failing the reply: threading is a courtesy.
    ``message_id`` is for a notice whose id was fixed before it was rendered (an outbox
    intent); otherwise a new one is made.
    """
    if now.utcoffset() is None:
        raise ComposeError("compose() needs an aware datetime for the Date header")
    if auto_submitted not in AUTO_SUBMITTED_VALUES:
        raise ComposeError(
            f"Auto-Submitted must be one of {AUTO_SUBMITTED_VALUES}, not {auto_submitted!r}"
        )
    full_subject = _subject(settings.subject_prefix, subject)
    if message_id is None:
        message_id = new_message_id(kind, settings.domain)
    elif normalize_message_id(message_id) != message_id:
        raise ComposeError(f"{message_id!r} is not a usable Message-ID")
    headers: list[tuple[str, str | Header]] = [
        ("From", _address(settings.sender_name, settings.intake_address)),
        ("To", _address(to_name or "", to)),
    ]
    if reply_to:
        headers.append(("Reply-To", _address("", reply_to)))
    headers += [
        ("Subject", Header(full_subject, "utf-8")),
        # Japanese recipients read the Date in their own zone (+0900).
        ("Date", format_datetime(now.astimezone(settings.zone))),
        ("Message-ID", message_id),
        *_thread(in_reply_to, references),
        ("Auto-Submitted", auto_submitted),
        ("X-Auto-Response-Suppress", "All"),
    ]
    message = _with_attachments(body, attachments) if attachments else _body_part(body)
    for name, value in headers:
        message[name] = value  # type: ignore[assignment]  # email accepts Header objects
    return ComposedMail(message_id=message_id, subject=full_subject, raw=_wire(message))


class _WirePolicy(Compat32):
    """compat32 with CRLF, except that message-id headers are folded by hand between ids.

    compat32 rather than the default policy: every header value here is 7-bit or a Header
    object already (nothing left to refold), and the notices' bytes are compat32's
    (tests/integration/test_notice_bytes.py pins them). Message ids are folded between ids,
    never inside one and never RFC 2047 encoded, or threading breaks at the recipient.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _ID_HEADERS:
            return _fold_ids(name, str(value).split(), self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _ID_HEADERS:
            return _fold_ids(name, str(value).split(), self.linesep).encode("ascii")
        return bytes(super().fold_binary(name, value))


_WIRE_POLICY = _WirePolicy(linesep="\r\n")
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_FOLD_AT = 78
_ADDRESS = re.compile(r"^[^\s<>()\[\],;:\\\"@]+@[^\s<>()\[\],;:\\\"@]+$")


def _fold_ids(name: str, ids: list[str], linesep: str) -> str:
    head = f"{name}:"
    lines = [head]
    for message_id in ids:
        line_holds_an_id = len(lines) > 1 or lines[0] != head
        if line_holds_an_id and len(lines[-1]) + 1 + len(message_id) > _FOLD_AT:
            lines.append("")  # continuation line: starts with the space added below
        lines[-1] += " " + message_id
    return linesep.join(lines) + linesep


def _wire(message: Message) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(message)
    return out.getvalue()


def _body_part(body: str) -> MIMEText:
    # utf-8 text parts go out base64 (email.charset's default for utf-8).
    return MIMEText(_crlf_free(body), "plain", "utf-8")


def _with_attachments(body: str, attachments: Sequence[Attachment]) -> MIMEMultipart:
    message = MIMEMultipart("mixed")
    message.attach(_body_part(body))
    for filename, content_type, data in attachments:
        message.attach(_attachment(filename, content_type, data))
    return message


def _address(display_name: str, addr_spec: str) -> str:
    """``Name <addr>`` with the name RFC 2047 encoded; refuses what could not be delivered."""
    address = addr_spec.strip()
    # No SMTPUTF8 on the way out: an address with non-ASCII characters could not be delivered.
    if not address.isascii():
        raise ComposeError(f"cannot send to {addr_spec!r}: only ASCII addresses can be delivered")
    if not _ADDRESS.match(address):
        raise ComposeError(f"{addr_spec!r} is not a usable email address")
    name = _flat(display_name)
    if not name:
        return address
    return formataddr((name, address), charset="utf-8")


def _flat(text: str) -> str:
    # A header value may not contain line breaks; a name or subject quoted from inbound mail might.
    return re.sub(r"[\r\n]+[ \t]*", " ", text).strip()


def _subject(prefix: str, subject: str) -> str:
    flat = _flat(subject)
    return flat if not prefix or flat.startswith(prefix) else prefix + flat


def _thread(in_reply_to: str | None, references: Sequence[str]) -> list[tuple[str, str]]:
    parent = normalize_message_id(in_reply_to) if in_reply_to else None
    chain = [mid for mid in (normalize_message_id(r) for r in references) if mid]
    if parent and parent not in chain:
        chain.append(parent)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    threading = [("In-Reply-To", parent)] if parent else []
    return threading + ([("References", " ".join(chain))] if chain else [])


def _crlf_free(body: str) -> str:
    # The policy writes CRLF itself; a stray CR in a template would otherwise double up.
    return body.replace("\r\n", "\n").replace("\r", "\n")


def _attachment(filename: str, content_type: str, data: bytes) -> MIMEBase:
    maintype, sep, subtype = content_type.partition("/")
    if not sep or not maintype or not subtype:
        raise ComposeError(
            f"attachment {filename!r}: content type must be TYPE/SUBTYPE, not {content_type!r}"
        )
    part = MIMEBase(maintype, subtype)
    part.set_payload(data)
    encoders.encode_base64(part)
    # RFC 2231 (filename*=utf-8''…), which every current mailer reads.
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    return part
