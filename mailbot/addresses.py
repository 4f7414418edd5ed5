"""mailbot's own addresses: the intake address and the reply addresses it hands out.

A reply address is the intake local part plus a tag (``apply+a<token>@domain`` for the
applicant's and manager's replies, ``apply+t<token>@domain`` for staff review tokens,
``apply+bounce@domain`` for delivery reports),
so one mailbox or one MX serves them all. Anything else is not ours, and the gateway answers
550: mailbot is never an open relay.

Case never matters. Mail systems fold the case of local parts and domains on the way
(``Apply+T…@MAILBOT.TEST``), so the intake local part, the domain and the tag are all read
case-insensitively; mailbot only hands out lower-case tags (the tokens are lower-case base32),
so reading a tag lower-cased loses nothing.
"""

from __future__ import annotations

from email.utils import parseaddr

from mailbot.config import Settings

TAG_SEPARATOR = "+"
# The SMTP null reverse-path, as an envelope sender or a Return-Path header spells it.
NULL_SENDERS = frozenset({"", "<>"})


def split_address(address: str) -> tuple[str, str]:
    """(local part, lower-case domain) of an address, bare or with a display name."""
    bare = parseaddr(address)[1]
    local, _, domain = bare.rpartition("@")
    return local, domain.lower()


def is_own_address(address: str, settings: Settings) -> bool:
    """True for the intake address and any tagged variant of it (case-insensitive)."""
    return is_form_of(address, settings.intake_address)


def is_form_of(address: str, intake_address: str) -> bool:
    """True when ``address`` is ``intake_address`` or a ``+tag`` of it, in any case."""
    local, domain = split_address(address)
    intake_local, intake_domain = split_address(intake_address)
    if not local or domain != intake_domain:
        return False
    base = local.split(TAG_SEPARATOR, 1)[0]
    return base.lower() == intake_local.lower()


def is_null_sender(address: str | None) -> bool:
    """True for the null reverse-path (``MAIL FROM:<>``), which must never be answered."""
    return address is not None and address.strip() in NULL_SENDERS


def reply_tag(address: str) -> str | None:
    """The tag of a tagged own address, lower-cased (``apply+T…@`` → ``t…``), else None."""
    local, _ = split_address(address)
    _, sep, tag = local.partition(TAG_SEPARATOR)
    return tag.lower() if sep and tag else None


def mailbox_key(address: str) -> str:
    """The mailbox an address delivers to, for counting replies: the ``+tag`` removed and
    the case folded (``Mallory+1@Example.NET`` → ``mallory@example.net``), so variants of
    one address share one allowance."""
    local, domain = split_address(address)
    if not local:
        return address.strip().casefold()
    base = local.split(TAG_SEPARATOR, 1)[0] or local
    return f"{base.casefold()}@{domain}"


def tagged_address(settings: Settings, tag: str) -> str:
    local, domain = split_address(settings.intake_address)
    return f"{local}{TAG_SEPARATOR}{tag}@{domain}"
