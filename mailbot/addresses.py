"""mailbot's own addresses: the intake address and the reply addresses it hands out.

A reply address is the intake local part plus a tag (``apply+a<token>@domain`` for the
applicant's and manager's replies, ``apply+t<token>@domain`` for staff review tokens,
``apply+bounce@domain`` for delivery reports),
so one mailbox or one MX serves them all. Anything else is not ours, and the gateway answers
550: mailbot is never an open relay.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from functools import lru_cache

from mailbot.config import Settings

TAG_SEPARATOR = "+"
# A bare address, as SMTP's RCPT TO hands it over: nothing for parseaddr to strip.
_BARE = re.compile(r"[^\s<>()\"',;:\\\[\]@]+@[^\s<>()\"',;:\\\[\]@]+")


@lru_cache(maxsize=1024)
def split_address(address: str) -> tuple[str, str]:
    """(local part, lower-case domain) of an address, bare or with a display name.

    Cached and with a fast path for bare addresses: the SMTP gateway asks this for every
    recipient of every session, and parseaddr is the slowest step of an RCPT.
    """
    bare = address if _BARE.fullmatch(address) else parseaddr(address)[1]
    local, _, domain = bare.rpartition("@")
    return local, domain.lower()


def is_own_address(address: str, settings: Settings) -> bool:
    """True for the intake address and any tagged variant of it (case-insensitive)."""
    local, domain = split_address(address)
    intake_local, intake_domain = split_address(settings.intake_address)
    if not local or domain != intake_domain:
        return False
    base = local.split(TAG_SEPARATOR, 1)[0]
    return base.lower() == intake_local.lower()


def reply_tag(address: str) -> str | None:
    """The tag of a tagged own address (``apply+TAG@…`` → ``TAG``), else None."""
    local, _ = split_address(address)
    _, sep, tag = local.partition(TAG_SEPARATOR)
    return tag if sep and tag else None


def tagged_address(settings: Settings, tag: str) -> str:
    local, domain = split_address(settings.intake_address)
    return f"{local}{TAG_SEPARATOR}{tag}@{domain}"
