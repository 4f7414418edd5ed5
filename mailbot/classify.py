"""What kind of mail this is, from headers, addresses and the (already decoded) body only.

The order of the checks is the policy: anything machine-sent (bounce, auto-reply, list mail,
our own mail coming back) is recognised before anything that would be answered, because
answering a machine is how mail loops start (RFC 3834).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mailbot.addresses import is_form_of
from mailbot.mime import ParsedMail, parse_header_params


class Kind(StrEnum):
    BOUNCE = "bounce"  # delivery failure report: mark our outbound mail, never answer
    AUTO_REPLY = "auto_reply"  # auto-responder, list or receipt mail: never answer
    REPLY = "reply"  # to another address of our domain (staff decision hook)
    HELP = "help"  # asks for instructions: answer with the form
    CONTRACT = "contract"  # 契約内容確認: answer a registered contact with their contract
    REQUEST = "request"  # to the intake address: parse as an application
    OTHER = "other"  # cannot or must not be answered (our own mail, no sender)


_ANSWERABLE = frozenset({Kind.REPLY, Kind.HELP, Kind.CONTRACT, Kind.REQUEST})


@dataclass(frozen=True)
class Classification:
    kind: Kind
    reason: str  # for the audit log: which signal decided

    @property
    def may_answer(self) -> bool:
        """Whether the bot may send any mail back in response."""
        return self.kind in _ANSWERABLE


def classify(
    mail: ParsedMail, envelope_from: str | None, *, intake_address: str, own_domain: str
) -> Classification:
    """Classify one message.

    ``envelope_from`` is the SMTP MAIL FROM (``""``/``"<>"`` is the null sender of bounces);
    None when unknown (IMAP), in which case a ``Return-Path: <>`` header counts instead.
    """
    intake = intake_address.strip().lower()
    domain = own_domain.strip().lower().lstrip("@")
    for check in (_bounce, _auto_reply):
        reason = check(mail, envelope_from)
        if reason:
            return Classification(Kind.BOUNCE if check is _bounce else Kind.AUTO_REPLY, reason)
    if mail.from_address is not None and is_form_of(mail.from_address, intake):
        # The intake address or any +tag of it, in any case (apply+bounce@, APPLY+T…@):
        # answering would only mail ourselves, and a forged one could start a loop.
        return Classification(Kind.OTHER, f"sent from mailbot's own address {mail.from_address}")
    if mail.from_address is None and not mail.reply_to:
        return Classification(Kind.OTHER, "no sender address to answer")
    recipient = _other_own_address(mail, intake, domain)
    if recipient:
        return Classification(Kind.REPLY, f"addressed to {recipient}, not the intake address")
    # A help subject first, then 契約内容確認 (subject or first line, so its empty body does not
    # read as a request for help), then an empty body.
    if normalise_subject(mail.subject) in _HELP_WORDS:
        return Classification(Kind.HELP, "subject asks for help")
    reason = _contract(mail)
    if reason:
        return Classification(Kind.CONTRACT, reason)
    reason = _help(mail)
    if reason:
        return Classification(Kind.HELP, reason)
    if intake in _recipients(mail, domain):
        return Classification(Kind.REQUEST, "addressed to the intake address")
    return Classification(Kind.REQUEST, "intake address not among visible recipients (Bcc)")


# --- bounces ---------------------------------------------------------------------------------

_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


def _bounce(mail: ParsedMail, envelope_from: str | None) -> str | None:
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null envelope sender"
    if envelope_from is None and any(v.strip() == "<>" for v in mail.header_values("return-path")):
        return "null Return-Path"
    if _local_part(mail.from_address) in _DAEMON_LOCAL_PARTS:
        return f"From {mail.from_address}"
    if _report_type(mail) == "delivery-status":
        return "multipart/report; report-type=delivery-status"
    if mail.header_values("x-failed-recipients"):
        return "X-Failed-Recipients header"
    return None


def _local_part(address: str | None) -> str:
    return (address or "").rpartition("@")[0] or (address or "")


def _report_type(mail: ParsedMail) -> str | None:
    if mail.content_type != "multipart/report":
        return None
    values = mail.header_values("content-type")
    return parse_header_params(values[0]).get("report-type", "").strip().lower() if values else ""


# --- auto-replies and list mail ---------------------------------------------------------------

_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
_LIST_HEADERS = ("list-id", "list-unsubscribe")


def _auto_reply(mail: ParsedMail, _envelope_from: str | None) -> str | None:
    for value in mail.header_values("auto-submitted"):
        token = _first_token(value)
        if token and token != "no":
            return f"Auto-Submitted: {token}"
    for value in mail.header_values("precedence"):
        if _first_token(value) in _BULK_PRECEDENCE:
            return f"Precedence: {_first_token(value)}"
    for name in _AUTO_HEADERS + _LIST_HEADERS:
        if mail.header_values(name):
            return f"{name} header"
    if _report_type(mail) == "disposition-notification":
        return "read receipt (disposition-notification)"
    return None


def _first_token(value: str) -> str:
    """``auto-replied; owner-email=…`` / ``bulk (comment)`` → ``auto-replied`` / ``bulk``."""
    return re.split(r"[;(\s]", value.strip(), maxsplit=1)[0].lower()


# --- replies to another address of ours ------------------------------------------------------

# Headers an MDA adds naming the mailbox this copy was delivered to: better than To/Cc.
_DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to")


def _recipients(mail: ParsedMail, domain: str) -> list[str]:
    """Our mailboxes this copy was delivered to, if an MDA said so; else To and Cc.

    Delivery headers of other domains are ignored: they come from earlier hops (a forward).
    """
    delivered = [
        address
        for name in _DELIVERY_HEADERS
        for value in mail.header_values(name)
        if _domain(address := value.strip().strip("<>").strip().lower()) == domain
    ]
    return delivered or [*mail.to_addresses, *mail.cc_addresses]


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _other_own_address(mail: ParsedMail, intake: str, domain: str) -> str | None:
    recipients = _recipients(mail, domain)
    if intake in recipients:
        return None
    return next((r for r in recipients if _domain(r) == domain), None)


# --- help ------------------------------------------------------------------------------------

_HELP_WORDS = frozenset({"help", "ヘルプ"})
_SUBJECT_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw|wg|sv|tr|転送|返信)(?:\[\d+\])?\s*:\s*)+", re.I)
_SUBJECT_NOISE = re.compile(r"[\s【】\[\]〔〕「」]+")
_SIGNATURE_DELIMITER = re.compile(r"^--[ \t]?$", re.M)


def normalise_subject(subject: str) -> str:
    """Subject for keyword matching: NFKC (so ＨＥＬＰ, ﾍﾙﾌﾟ, ：match), case-folded, without
    Re:/Fwd:/転送: prefixes, brackets and spaces."""
    text = unicodedata.normalize("NFKC", subject).strip()
    text = _SUBJECT_PREFIX.sub("", text)
    return _SUBJECT_NOISE.sub("", text).casefold()


def _help(mail: ParsedMail) -> str | None:
    if not mail.attachments and not _body_without_signature(mail.text).strip():
        return "empty body and no attachments"
    return None


# 契約内容確認 (the guide's step ①) and the ways people shorten or translate it.
_CONTRACT_WORDS = frozenset(
    {"契約内容確認", "契約内容", "契約内容の確認", "契約確認", "contract", "契約内容確認依頼"}
)


def _contract(mail: ParsedMail) -> str | None:
    """Asks for the contract: in the subject, or as the first written line of the body."""
    if normalise_subject(mail.subject) in _CONTRACT_WORDS:
        return "subject asks for the contract"
    first = next(
        (line for line in _body_without_signature(mail.text).splitlines() if line.strip()), ""
    )
    if normalise_subject(first) in _CONTRACT_WORDS:
        return "first line asks for the contract"
    return None


def _body_without_signature(text: str) -> str:
    """Text above an RFC 3676 signature delimiter (``-- ``); U+3000 counts as blank."""
    return _SIGNATURE_DELIMITER.split(text, maxsplit=1)[0].replace("\u3000", " ")


# --- bounced message ids ---------------------------------------------------------------------


def bounced_message_ids(mail: ParsedMail) -> list[str]:
    """Message-IDs (``<…>`` form) of our outbound mail that this bounce reports.

    Taken from the returned headers (message/rfc822, text/rfc822-headers), the DSN's
    Original-Envelope-Id (the ENVID we sent; returned as is when it is no Message-ID) and
    X-Original-Message-ID. Empty for non-bounces, and for DSNs whose every recipient action
    is ``delayed``/``relayed``/``delivered``/``expanded``: those are not failures.
    """
    is_report = _report_type(mail) == "delivery-status"
    if not is_report and _local_part(mail.from_address) not in _DAEMON_LOCAL_PARTS:
        return []
    actions = {
        _first_token(value) for group in mail.delivery_status for value in group.get("action", ())
    }
    if actions and "failed" not in actions:
        return []
    found: list[str] = []
    for group in mail.delivery_status:
        found += [_xtext_decode(v) for v in group.get("original-envelope-id", ())]
        found += group.get("x-original-message-id", ())
    for headers in mail.embedded_headers:
        found += headers.get("message-id", ())
        found += headers.get("x-original-message-id", ())
    found += mail.header_values("x-original-message-id")
    return _unique(_as_message_id(value) for value in found if value.strip())


def _xtext_decode(value: str) -> str:
    """RFC 3461 xtext: ``+XX`` is a hex-encoded byte."""
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value.strip())


def _as_message_id(value: str) -> str:
    value = value.strip()
    if "@" in value and not value.startswith("<"):
        return f"<{value}>"
    return value


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
