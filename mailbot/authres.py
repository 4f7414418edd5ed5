"""Authentication-Results (RFC 8601): did the trusted server see DKIM or DMARC pass?

Hand-written because the check is small and its trust rule is the point: only headers whose
authserv-id is the one configured count, and only those standing above the first
``Received`` header — the ones the trusted server added on receipt. A header the sender put
in the message (below the server's ``Received``) is ignored, whatever it claims. The MTA must
also remove incoming headers that carry its own authserv-id (RFC 8601 §5; OpenDKIM and
OpenDMARC do).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_RESULT = re.compile(r"\b(dkim|dmarc)\s*=\s*(\w+)((?:\s+[\w.]+\s*=\s*[^\s;]+)*)", re.IGNORECASE)
_PROPERTY = re.compile(r"([\w.]+)\s*=\s*([^\s;]+)")
_COMMENT = re.compile(r"\([^()]*\)")


def trusted_headers(headers: Sequence[tuple[str, str]], authserv_id: str) -> list[str]:
    """A-R values with ``authserv_id`` that stand before the first Received header."""
    found: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "received":
            break
        if lowered == "authentication-results" and _authserv_id(value) == authserv_id.lower():
            found.append(value)
    return found


def _authserv_id(value: str) -> str:
    return _COMMENT.sub("", value).split(";", 1)[0].strip().split()[0].lower() if value else ""


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


def authenticated(headers: Sequence[tuple[str, str]], authserv_id: str, from_domain: str) -> bool:
    return any(passes_for(v, from_domain) for v in trusted_headers(headers, authserv_id))
