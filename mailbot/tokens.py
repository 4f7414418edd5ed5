"""Signed, single-use, expiring tokens: where authority comes from, never a From header.

Two shapes, signed with the current key of a :class:`mailbot.keys.Keyring` and verified with
any key of it that still verifies (there are few: trying each costs a few HMACs), separated by
purpose:

* **Reply tokens** ride in a reply address (``apply+t<token>@domain``). The token is a random
  nonce plus a truncated HMAC of it, in lower-case base32 so that mail systems that fold the
  case of local parts cannot break it, and short enough for the 64-character local-part limit.
  The signature lets garbage be refused without a database lookup; the ``token`` row binds the
  nonce to its purpose, application, staff member and application version, records its single
  use, and names the key that signed it (so that a retired key verifies as long as it must).
* **Link tokens** ride in URLs (the status page): an expiry time and an itsdangerous signature
  over the receipt number and that expiry, so a link opens one receipt until it expires;
  nothing is stored, and "now" is an argument like everywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from itsdangerous import Signer
from sqlmodel import Session, select

from db.models import Token
from mailbot.clock import as_utc
from mailbot.config import Settings
from mailbot.keys import Keyring, verifying_keyring

NONCE_BYTES = 10  # 80 bits of randomness: unguessable, and 16 base32 characters
MAC_BYTES = 10
TOKEN_LENGTH = 32  # base32 characters of nonce + MAC
LINK_SALT = "mailbot.status-link"


class Purpose(StrEnum):
    REVIEW = "review"  # a staff member answers a review request
    APPLICANT = "applicant"  # the applicant or manager answers their receipt notice
    # A staff member cancels an approved application before its start date. Its own purpose,
    # not REVIEW at the approved version: the purpose is inside the MAC, so a cancel token can
    # never approve or reject, and no review token (whatever its version) can ever cancel;
    # each handler checks exactly one purpose and grants exactly one power.
    CANCEL = "cancel"


class TokenRefusal(StrEnum):
    """Why a token gives no authority; stored in the audit log, never shown to outsiders."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN = "unknown"
    WRONG_PURPOSE = "wrong_purpose"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TokenCheck:
    token: Token | None
    refusal: TokenRefusal | None

    @property
    def ok(self) -> bool:
        return self.refusal is None and self.token is not None


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _mac(secret: bytes, purpose: str, nonce: bytes) -> bytes:
    message = purpose.encode() + b":" + nonce
    return hmac.new(secret, message, hashlib.sha256).digest()[:MAC_BYTES]


def issue_reply_token(
    session: Session,
    keys: Keyring,
    *,
    purpose: Purpose,
    application_id: int,
    version: int,
    now: datetime,
    lifetime: timedelta,
    staff_id: int | None = None,
    recipient: str | None = None,
) -> str:
    """Create the token's row and return the string to put in a reply address."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    session.add(
        Token(
            nonce=_b32(nonce),
            purpose=purpose.value,
            application_id=application_id,
            staff_id=staff_id,
            recipient=recipient,
            version=version,
            created_at=now,
            expires_at=now + lifetime,
            key_id=keys.current.id,
        )
    )
    return reply_token_text(keys, purpose, nonce)


def reply_token_text(keys: Keyring, purpose: Purpose, nonce: bytes) -> str:
    """The nonce and its MAC under the current key, as 32 lower-case base32 characters."""
    return _b32(nonce) + _b32(_mac(keys.current.material, purpose.value, nonce))


def signed_purpose(keys: Keyring, text: str, now: datetime) -> Purpose | None:
    """The purpose ``text`` was signed for by a key that verifies at ``now``, or None when it
    is not one of our tokens.

    Lets one reply tag carry tokens of several purposes (staff answer review requests and
    approval notices at ``apply+t…``) and route each to the one handler allowed to use it,
    which then checks the token fully; this alone grants nothing.
    """
    parts = _split(text)
    if parts is None:
        return None
    nonce, mac = parts
    for secret in keys.verifying(now):
        for purpose in Purpose:
            if hmac.compare_digest(mac, _mac(secret, purpose.value, nonce)):
                return purpose
    return None


def _split(text: str) -> tuple[bytes, bytes] | None:
    """The nonce and MAC of a token string, or None when it is not shaped like one."""
    candidate = text.strip().lower()
    if len(candidate) != TOKEN_LENGTH:
        return None
    try:
        return base64.b32decode(candidate[:16].upper()), base64.b32decode(candidate[16:].upper())
    except ValueError:
        return None


def check_reply_token(
    session: Session, keys: Keyring, text: str, *, purpose: Purpose, now: datetime
) -> TokenCheck:
    """Verify signature, existence, purpose, single use and expiry (in that order).

    The row is locked on PostgreSQL so that two replies with the same token racing through
    two workers cannot both use it.
    """
    parts = _split(text)
    if parts is None:
        return TokenCheck(None, TokenRefusal.MALFORMED)
    if signed_purpose(keys, text, now) is None:
        return TokenCheck(None, TokenRefusal.BAD_SIGNATURE)
    query = select(Token).where(Token.nonce == _b32(parts[0]))
    token = session.exec(query.with_for_update()).first()
    if token is None:
        return TokenCheck(None, TokenRefusal.UNKNOWN)
    if token.purpose != purpose.value:
        return TokenCheck(token, TokenRefusal.WRONG_PURPOSE)
    if token.used_at is not None:
        return TokenCheck(token, TokenRefusal.USED)
    if as_utc(token.expires_at) <= now:
        return TokenCheck(token, TokenRefusal.EXPIRED)
    return TokenCheck(token, None)


def use_token(session: Session, token: Token, now: datetime) -> None:
    token.used_at = now
    session.add(token)


# --- link tokens ----------------------------------------------------------------------------


def signed_link_token(keys: Keyring, salt: str, subject: str, expires_at: datetime) -> str:
    """``EXPIRY.SIGNATURE``: opens ``subject``'s page until ``expires_at``, nothing else.

    ``salt`` names the kind of page (a receipt's, an office's): a subject may look like one of
    another kind (an office code like a receipt number), and a link must open only its own."""
    expiry = str(int(expires_at.timestamp()))
    signer = Signer(keys.current.material, salt=salt)
    return f"{expiry}.{signer.get_signature(f'{subject}:{expiry}').decode()}"


def signed_link_refusal(
    keys: Keyring, salt: str, token: str, subject: str, now: datetime
) -> TokenRefusal | None:
    """Why ``token`` does not open ``subject``'s page at ``now``; None when it does (signed
    under ``salt`` by a key that verifies at ``now``, for exactly ``subject``, not expired)."""
    expiry, _, signature = token.partition(".")
    if not expiry.isdigit() or not signature:
        return TokenRefusal.MALFORMED
    # Signer takes several keys: it verifies with each (and would sign with the last).
    signer = Signer(list(keys.verifying(now)), salt=salt)
    if not signer.verify_signature(f"{subject}:{expiry}".encode(), signature.encode()):
        return TokenRefusal.BAD_SIGNATURE
    if now.timestamp() >= int(expiry):
        return TokenRefusal.EXPIRED
    return None


def link_token(keys: Keyring, receipt_no: str, expires_at: datetime) -> str:
    """``EXPIRY.SIGNATURE``: opens ``receipt_no``'s page until ``expires_at``, nothing else."""
    return signed_link_token(keys, LINK_SALT, receipt_no, expires_at)


def link_refusal(
    keys: Keyring, token: str, *, receipt_no: str, now: datetime
) -> TokenRefusal | None:
    """Why ``token`` does not open ``receipt_no``'s page at ``now``; None when it does."""
    return signed_link_refusal(keys, LINK_SALT, token, receipt_no, now)


def checked_link(
    session: Session, settings: Settings, refusal_with: Callable[[Keyring], TokenRefusal | None]
) -> TokenRefusal | None:
    """What ``refusal_with`` says of a link (None: it opens the page), asked with this
    process's keys, or, when none of them made the signature, with the keys read again from the
    database (another process may have rotated them since)."""
    keys = verifying_keyring(
        session, settings, lambda keys: refusal_with(keys) is not TokenRefusal.BAD_SIGNATURE
    )
    return refusal_with(keys)
