"""Render one outgoing message to bytes, once: the outbox stores and sends exactly these bytes.

Japanese business mail, written the way every current mailer reads it:

- Body ``text/plain; charset=utf-8`` in base64. ISO-2022-JP was the old convention, but it
  cannot carry ㈱ ① 髙 (see JAPANESE_MAIL.md) and UTF-8 is read fine by all current Japanese
  mailers (Outlook, Thunderbird, Becky!, Gmail, iOS/Android mail). base64 rather than
  quoted-printable because Japanese text is about a third the size that way, and rather than
  8bit because relays on the way are not all 8BITMIME.
- Subject and display names RFC 2047 encoded, attachment names RFC 2231 encoded (the
  ``email`` policy does both).
- RFC 3834 for an automatic sender: ``Auto-Submitted`` on every message, no ``Precedence``
  (RFC 3834 section 5 advises against it); ``X-Auto-Response-Suppress: All`` keeps Exchange
  out-of-office replies from answering us.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

from mailbot.config import Settings
from mailbot.errors import MailbotError

AUTO_GENERATED = "auto-generated"
AUTO_REPLIED = "auto-replied"
AUTO_SUBMITTED_VALUES = (AUTO_GENERATED, AUTO_REPLIED)

# A message id as it may stand between angle brackets: printable ASCII, no space, no brackets.
_ID_CHARS = re.compile(r"^[!-;=?-~]+$")  # 0x21–0x7E without "<" (0x3C) and ">" (0x3E)
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_FOLD_AT = 78
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


class _MailPolicy(EmailPolicy):
    """policy.SMTP, except that message-id headers are never RFC 2047 encoded.

    The stock folder encodes any header word longer than a line (a long In-Reply-To becomes
    ``=?utf-8?q?=3C...?=``), which breaks threading at the recipient. Ids are plain ASCII, so
    they are folded by hand between ids instead.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _ID_HEADERS:
            return _fold_ids(name, str(value).split(), self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _ID_HEADERS:
            return _fold_ids(name, str(value).split(), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


MAIL_POLICY = _MailPolicy(linesep="\r\n")


def _fold_ids(name: str, ids: list[str], linesep: str) -> str:
    head = f"{name}:"
    lines = [head]
    for message_id in ids:
        line_holds_an_id = len(lines) > 1 or lines[0] != head
        if line_holds_an_id and len(lines[-1]) + 1 + len(message_id) > _FOLD_AT:
            lines.append("")  # continuation line: starts with the space added below
        lines[-1] += " " + message_id
    return linesep.join(lines) + linesep


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
) -> ComposedMail:
    """Build the message once; the caller stores ``raw`` and ``message_id`` in the outbox.

    ``settings.subject_prefix`` is put in front of ``subject`` unless it is already there.
    ``in_reply_to`` is appended to ``references`` when missing (RFC 5322 threading). Unusable
    ids from inbound mail are dropped rather than failing the reply: threading is a courtesy.
    """
    if now.utcoffset() is None:
        raise ComposeError("compose() needs an aware datetime for the Date header")
    if auto_submitted not in AUTO_SUBMITTED_VALUES:
        raise ComposeError(
            f"Auto-Submitted must be one of {AUTO_SUBMITTED_VALUES}, not {auto_submitted!r}"
        )
    full_subject = _subject(settings.subject_prefix, subject)
    message_id = new_message_id(kind, settings.domain)
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = _address(settings.sender_name, settings.intake_address)
    message["To"] = _address(to_name or "", to)
    if reply_to:
        message["Reply-To"] = _address("", reply_to)
    message["Subject"] = full_subject
    # Japanese recipients read the Date in their own zone (+0900).
    message["Date"] = format_datetime(now.astimezone(settings.zone))
    message["Message-ID"] = message_id
    _thread(message, in_reply_to, references)
    message["Auto-Submitted"] = auto_submitted
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(_crlf_free(body), subtype="plain", charset="utf-8", cte="base64")
    for filename, content_type, data in attachments:
        _attach(message, filename, content_type, data)
    return ComposedMail(message_id=message_id, subject=full_subject, raw=message.as_bytes())


def _address(display_name: str, addr_spec: str) -> Address:
    # No SMTPUTF8 on the way out: an address with non-ASCII characters could not be delivered.
    if not addr_spec.isascii():
        raise ComposeError(f"cannot send to {addr_spec!r}: only ASCII addresses can be delivered")
    try:
        return Address(_flat(display_name), addr_spec=addr_spec.strip())
    except (ValueError, IndexError) as exc:  # the email package's bad-address errors
        raise ComposeError(f"{addr_spec!r} is not a usable email address: {exc}") from exc


def _flat(text: str) -> str:
    # A header value may not contain line breaks; a name or subject quoted from inbound mail might.
    return re.sub(r"[\r\n]+[ \t]*", " ", text).strip()


def _subject(prefix: str, subject: str) -> str:
    flat = _flat(subject)
    return flat if not prefix or flat.startswith(prefix) else prefix + flat


def _thread(message: EmailMessage, in_reply_to: str | None, references: Sequence[str]) -> None:
    parent = normalize_message_id(in_reply_to) if in_reply_to else None
    chain = [mid for mid in (normalize_message_id(r) for r in references) if mid]
    if parent and parent not in chain:
        chain.append(parent)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    if parent:
        message["In-Reply-To"] = parent
    if chain:
        message["References"] = " ".join(chain)


def _crlf_free(body: str) -> str:
    # The policy writes CRLF itself; a stray CR in a template would otherwise double up.
    return body.replace("\r\n", "\n").replace("\r", "\n")


def _attach(message: EmailMessage, filename: str, content_type: str, data: bytes) -> None:
    maintype, sep, subtype = content_type.partition("/")
    if not sep or not maintype or not subtype:
        raise ComposeError(
            f"attachment {filename!r}: content type must be TYPE/SUBTYPE, not {content_type!r}"
        )
    # bytes content always goes out base64; the policy writes the name as RFC 2231 (filename*=).
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
