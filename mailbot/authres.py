"""Authentication-Results (RFC 8601): did the trusted server see DKIM or DMARC pass?

Hand-written because the check is small and its trust rule is the point. Only headers whose
authserv-id is ``MAILBOT_TRUSTED_AUTHSERV_ID`` count, and only those the trusted server added
on receipt; anything else is ignored, whatever it claims. Which ones those are depends on how
the message came in (``InboundMessage.channel``):

* ``smtp`` — the gateway put its own ``Received:`` on top (``mailbot.gateway.trace``), naming
  the client it took the message from. Only when that client is one of
  ``MAILBOT_TRUSTED_RELAYS`` (the MTA in front, which checked DKIM/DMARC) do the headers
  between the gateway's ``Received`` and the relay's own ``Received`` count. A sender that
  connects to the gateway directly is not a trusted relay: nothing it writes counts, not even
  a first line ``Authentication-Results: <trusted id>; dkim=pass`` (issue 13).
* ``pipe`` (``mailbot ingest``) — the MTA that runs the pipe is the trusted server: the headers
  above the first ``Received`` (its own) count.
* ``imap`` — the same rule: the headers the delivering server put above its ``Received``. A
  mailbox server that adds a ``Received`` of its own on delivery above them (Dovecot's LMTP
  does unless ``lmtp_add_received_header = no``) hides them, and replies are then refused as
  not authenticated: safe, and docs/operations.md says what to set.

Every way, the trusted MTA must also remove incoming headers that carry its own authserv-id
(RFC 8601 §5; OpenDKIM and OpenDMARC do), or a sender's copy would stand next to its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import ip_address

from mailbot.config import IPNetwork
from mailbot.gateway.trace import own_received_client

SMTP_CHANNEL = "smtp"

_RESULT = re.compile(r"\b(dkim|dmarc)\s*=\s*(\w+)((?:\s+[\w.]+\s*=\s*[^\s;]+)*)", re.IGNORECASE)
_PROPERTY = re.compile(r"([\w.]+)\s*=\s*([^\s;]+)")
_COMMENT = re.compile(r"\([^()]*\)")

Headers = Sequence[tuple[str, str]]


def trusted_headers(
    headers: Headers,
    authserv_id: str,
    *,
    channel: str,
    trusted_relays: Sequence[IPNetwork] = (),
) -> list[str]:
    """The A-R values with ``authserv_id`` that the trusted server added (see the module)."""
    if channel == SMTP_CHANNEL:
        relayed = _below_gateway_trace(headers, trusted_relays)
        if relayed is None:
            return []
        headers = relayed
    return _above_first_received(headers, authserv_id)


def _below_gateway_trace(headers: Headers, trusted_relays: Sequence[IPNetwork]) -> Headers | None:
    """The headers under the gateway's own Received when a trusted relay handed the message
    over; None otherwise (another client, or no gateway header on top)."""
    if not headers or headers[0][0].lower() != "received":
        return None
    client = own_received_client(headers[0][1])
    if client is None:
        return None
    address = ip_address(client)
    if not any(address in network for network in trusted_relays):
        return None
    return headers[1:]


def _above_first_received(headers: Headers, authserv_id: str) -> list[str]:
    found: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "received":
            break
        if lowered == "authentication-results" and _authserv_id(value) == authserv_id.lower():
            found.append(value)
    return found


def _authserv_id(value: str) -> str:
    words = _COMMENT.sub("", value).split(";", 1)[0].split()
    return words[0].lower() if words else ""


def passes_for(header_value: str, from_domain: str) -> bool:
    """True when the header shows dkim=pass with header.d, or dmarc=pass with header.from,
    equal to ``from_domain``."""
    domain = from_domain.lower().rstrip(".")
    body = _COMMENT.sub("", header_value)
    for clause in body.split(";")[1:]:
        match = _RESULT.search(clause)
        if match is None or match.group(2).lower() != "pass":
            continue
        method = match.group(1).lower()
        properties = {k.lower(): v.lower().rstrip(".") for k, v in _PROPERTY.findall(clause)}
        wanted = "header.d" if method == "dkim" else "header.from"
        if properties.get(wanted) == domain:
            return True
    return False


def authenticated(
    headers: Headers,
    authserv_id: str,
    from_domain: str,
    *,
    channel: str,
    trusted_relays: Sequence[IPNetwork] = (),
) -> bool:
    """True when a header the trusted server added shows DKIM or DMARC pass for the domain."""
    trusted = trusted_headers(headers, authserv_id, channel=channel, trusted_relays=trusted_relays)
    return any(passes_for(value, from_domain) for value in trusted)
