"""The signed, expiring link to an office's page (its contract, applications and 新着情報).

The application page's link tokens with another salt (:func:`mailbot.tokens.signed_link_token`):
an expiry and an itsdangerous signature, made with the keyring's current key and verified with
any key that still verifies, nothing stored. Its own salt keeps the two kinds apart: an office
code may look like a receipt number, and a link to one must never open the other.

Lifetime: ``MAILBOT_OFFICE_LINK_DAYS`` (default 14), never more than
``MAILBOT_LINK_TOKEN_DAYS``, the time a retired key keeps verifying links
(:func:`mailbot.keys.verifies_until`), so a rotation never cuts a live link short.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from sqlmodel import Session

from mailbot.config import Settings
from mailbot.keys import Keyring, keyring
from mailbot.tokens import TokenRefusal, signed_link_refusal, signed_link_token

OFFICE_LINK_SALT = "mailbot.office-link"


def office_link_days(settings: Settings) -> float:
    return min(settings.office_link_days, settings.link_token_days)


def office_link_expiry(settings: Settings, now: datetime) -> datetime:
    return now + timedelta(days=office_link_days(settings))


def office_link_token(keys: Keyring, office_code: str, expires_at: datetime) -> str:
    """``EXPIRY.SIGNATURE``: opens ``office_code``'s page until ``expires_at``, nothing else."""
    return signed_link_token(keys, OFFICE_LINK_SALT, office_code, expires_at)


def office_link_refusal(
    keys: Keyring, token: str, *, office_code: str, now: datetime
) -> TokenRefusal | None:
    """Why ``token`` does not open ``office_code``'s page at ``now``; None when it does."""
    return signed_link_refusal(keys, OFFICE_LINK_SALT, token, office_code, now)


def office_url(session: Session, settings: Settings, office_code: str, now: datetime) -> str:
    """The link in the contract reply: ``{MAILBOT_BASE_URL}/o/{OFFICE_CODE}?t={TOKEN}``."""
    expires = office_link_expiry(settings, now)
    token = office_link_token(keyring(session, settings), office_code, expires)
    return f"{settings.base_url}/o/{quote(office_code, safe='')}?t={token}"
