"""Does a reply's envelope sender (SMTP ``MAIL FROM``, the return path) belong to its From?

A staff reply's authority comes from the token in its reply address, the staff registry and
the From (``mailbot.review``), and, with ``MAILBOT_TRUSTED_AUTHSERV_ID``, from DKIM or DMARC at
the trusted server. The envelope sender is no better authenticated than the From: whoever
forges one can forge the other. But a forger who writes a staff member's From while sending
from an account or service of their own usually keeps that service's return path, and a
staff member's own mail system sends with their own address. So a different envelope sender
is a forgery signal, and ``MAILBOT_REVIEW_ENVELOPE_CHECK`` (on by default) refuses it.

Rewriting that legitimate mail meets on the way is undone before comparing, so it does not
refuse real replies:

* a ``+tag`` and the case (``Staff+x@Corp.JP`` is ``staff@corp.jp``; ``addresses.mailbox_key``);
* BATV bounce-address tagging (``prvs=TAG=staff@corp.jp``, ``btv1==TAG==staff@corp.jp``);
* SRS, which forwarders use (``SRS0=HHH=TT=corp.jp=staff@forwarder.example``, the nested
  ``SRS1=…``, and Microsoft 365's ``fwd+SRS=HHH=TT=corp.jp=staff@forwarder.example``).

Decoding SRS does not verify its hash (only the forwarder knows the key): it is a name, like
any envelope sender. The null sender (``<>``) is a bounce and never reaches a decision; it is
refused here anyway. With no envelope at all (IMAP) there is nothing to compare.
"""

from __future__ import annotations

import re

from mailbot.addresses import NULL_SENDERS, mailbox_key, split_address

_BATV = re.compile(r"(?:prvs=[^=]+=|btv1==[^=]+==)(?P<local>.+)", re.IGNORECASE)
# SRS0: hash=time=domain=local; SRS1 names the first forwarder, then "=" and the SRS0 part.
_SRS0 = re.compile(r"SRS0[=+-][^=]+=[^=]+=(?P<domain>[^=]+)=(?P<local>.+)", re.IGNORECASE)
_SRS1 = re.compile(
    r"SRS1[=+-][^=]+=[^=]+=[=+-][^=]+=[^=]+=(?P<domain>[^=]+)=(?P<local>.+)", re.IGNORECASE
)
_MS_SRS = re.compile(r"[^+]*\+SRS=[^=]+=[^=]+=(?P<domain>[^=]+)=(?P<local>.+)", re.IGNORECASE)


def sender_behind(return_path: str) -> str:
    """The address a return path stands for, with SRS and BATV rewriting undone."""
    local, domain = split_address(return_path.strip().strip("<>"))
    for pattern in (_SRS1, _SRS0, _MS_SRS):
        found = pattern.fullmatch(local)
        if found is not None:
            local, domain = found.group("local"), found.group("domain").lower()
            break
    tagged = _BATV.fullmatch(local)
    if tagged is not None:
        local = tagged.group("local")
    return f"{local}@{domain}" if local else return_path.strip()


def envelope_agrees(envelope_from: str | None, from_address: str) -> bool:
    """False when the envelope sender is another mailbox than the From (see the module)."""
    if envelope_from is None:
        return True  # the channel has no envelope (IMAP): nothing to compare
    if envelope_from.strip() in NULL_SENDERS:
        return False  # a bounce or an auto-reply is never a person's decision
    return mailbox_key(sender_behind(envelope_from)) == mailbox_key(from_address)
