"""Console sessions: who a browser is logged in as, and the CSRF tokens of its forms.

A session is a row (``console_session``) named by the SHA-256 of a random cookie value. A new
one is made at every login, whatever cookie the browser came with, and that old one is ended,
so a session id planted before login (fixation) never becomes a logged-in one. It works while:
not logged out (``ended_at``), used within ``MAILBOT_CONSOLE_IDLE_MINUTES``, younger than
``MAILBOT_CONSOLE_SESSION_HOURS``, and its staff member active — checked on every request, so a
member made inactive (``mailbot staff remove``) loses every session at once.

Forms of a session post its ``csrf`` token. Before login (the login and confirmation pages) a
browser has no session; it gets a random "pre-session" cookie and its forms post an HMAC of
that cookie under the signing key, so another site can neither read nor forge the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.models import ConsoleSession, Staff
from mailbot.clock import as_utc
from mailbot.config import Settings
from mailbot.console.auth import audit
from mailbot.console.rate import KEPT
from mailbot.keys import keyring

COOKIE = "mailbot_console"
PRE_COOKIE = "mailbot_console_pre"
CSRF_SALT = b"mailbot.console-csrf"
TOUCH_SECONDS = 60  # last_seen_at is written at most this often (one write per page otherwise)


@dataclass(frozen=True)
class StaffSession:
    """A logged-in request's session: the member (a detached copy) and its CSRF token."""

    session_id: int
    staff_id: int
    email: str
    name: str
    csrf: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_session(
    session: Session,
    settings: Settings,
    staff: Staff,
    now: datetime,
    *,
    presented: str | None,
    client: str,
) -> str:
    """A fresh session for ``staff``; the cookie value. ``presented``, the session cookie the
    browser came with (if any), is ended: whatever it was, it is not the new one."""
    assert staff.id is not None
    if presented:
        end_session(session, presented, now, reason="replaced_at_login")
    # Sessions a day past their absolute end are of no more use (the audit log keeps them).
    session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < now - KEPT))
    value = secrets.token_urlsafe(32)
    row = ConsoleSession(
        token_hash=_hash(value),
        staff_id=staff.id,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.console_session_hours),
    )
    session.add(row)
    session.flush()
    audit(session, "console_session_started", staff.email, now, session_id=row.id, client=client)
    return value


def load_session(
    session: Session, settings: Settings, value: str | None, now: datetime
) -> StaffSession | None:
    """The live session the cookie ``value`` names, or None (ending one that just lapsed)."""
    if not value or len(value) > 100:
        return None
    row = session.exec(
        select(ConsoleSession).where(ConsoleSession.token_hash == _hash(value))
    ).first()
    if row is None or row.ended_at is not None:
        return None
    staff = session.get(Staff, row.staff_id)
    reason = None
    if staff is None or not staff.active:
        reason = "staff_inactive"
    elif as_utc(row.expires_at) <= now:
        reason = "expired"
    elif now - as_utc(row.last_seen_at) > timedelta(minutes=settings.console_idle_minutes):
        reason = "idle"
    if reason is not None:
        _end(session, row, now, reason, staff.email if staff else "unknown")
        return None
    assert staff is not None and row.id is not None and staff.id is not None
    if (now - as_utc(row.last_seen_at)).total_seconds() >= TOUCH_SECONDS:
        row.last_seen_at = now
        session.add(row)
    return StaffSession(row.id, staff.id, staff.email, staff.name, row.csrf)


def end_session(session: Session, value: str, now: datetime, *, reason: str = "logout") -> None:
    row = session.exec(
        select(ConsoleSession).where(ConsoleSession.token_hash == _hash(value))
    ).first()
    if row is not None and row.ended_at is None:
        staff = session.get(Staff, row.staff_id)
        _end(session, row, now, reason, staff.email if staff else "unknown")


def _end(session: Session, row: ConsoleSession, now: datetime, reason: str, actor: str) -> None:
    row.ended_at = now
    session.add(row)
    audit(session, "console_session_ended", actor, now, session_id=row.id, reason=reason)


# --- CSRF --------------------------------------------------------------------------------------


def pre_session_value() -> str:
    return secrets.token_urlsafe(24)


def pre_session_token(session: Session, settings: Settings, pre: str) -> str:
    """The CSRF token of the forms a browser without a session posts (bound to its cookie)."""
    return _pre_token(keyring(session, settings).current.material, pre)


def pre_session_token_ok(
    session: Session, settings: Settings, pre: str | None, token: str, now: datetime
) -> bool:
    if not pre or not token:
        return False
    return any(
        hmac.compare_digest(_pre_token(secret, pre), token)
        for secret in keyring(session, settings).verifying(now)
    )


def _pre_token(secret: bytes, pre: str) -> str:
    return hmac.new(secret, CSRF_SALT + b":" + pre.encode(), hashlib.sha256).hexdigest()


def session_token_ok(who: StaffSession, token: str) -> bool:
    return bool(token) and hmac.compare_digest(who.csrf, token)
