"""Logging in to the staff console: a link and a short code mailed to an active staff member.

Why this shape (docs/console.md, "Logging in"):

* **A mail scanner cannot spend the link.** Defender Safe Links, Proofpoint and Mimecast fetch
  the links in incoming mail, sometimes seconds after it was sent. The link's GET only shows a
  confirmation page (:func:`check_link` changes nothing); only the POST of that page's form,
  with its CSRF token, redeems it (:func:`redeem_link`).
* **The code is the fallback**: typed on the login page with the address, for a browser other
  than the mail program's (:func:`redeem_code`).
* **Its own scope.** The link is ``NONCE.MAC``: 16 random bytes and an HMAC under the keyring's
  key with a salt of its own (``mailbot.console-login``), in URL-safe base64 with a dot. A reply
  token (32 base32 characters, its purpose inside its MAC, a row in ``token``) is neither shaped
  nor signed like it, and a login link is no reply token: each is checked only where it belongs.
  Only the SHA-256 of the nonce is stored (``console_login.link_hash``), and the code only as
  an HMAC, so reading the database gives no way in.
* **Single use, short-lived**: one row is one login, by link or by code, within
  ``MAILBOT_CONSOLE_LINK_MINUTES``; a few wrong codes and its code stops working.
* **Outsiders learn nothing**: asking for a link answers the same, whoever asks; only an active
  staff member gets mail. Asking and trying codes are rate-limited per address
  (:mod:`mailbot.console.rate`), counted the same for everyone.
* **Everything is audited**: every link issued, redeemed or refused is an ``audit_event``
  (``console_login_issued`` / ``_redeemed`` / ``_refused``, with the reason).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.models import AuditEvent, ConsoleLogin, Staff
from mailbot import notices
from mailbot.clock import as_utc
from mailbot.config import Settings
from mailbot.console.rate import KEPT, take
from mailbot.keys import Keyring, keyring, verifying_keyring
from mailbot.normalize import InvalidEmail, normalise_email
from mailbot.notify import queue_staff_mail

log = logging.getLogger("mailbot.console")

LINK_SALT = b"mailbot.console-login"
CODE_SALT = b"mailbot.console-code"
NONCE_BYTES = 16
MAC_BYTES = 16
CODE_DIGITS = 8
MAX_CODE_TRIES = 5  # wrong codes against one login before its code stops working
LOGIN_PATH = "/staff/login/"


class LoginRefusal(StrEnum):
    """Why a login was refused: in the audit log and the log, never told to an outsider."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    STAFF_INACTIVE = "staff_inactive"
    NOT_STAFF = "not_staff"
    WRONG_CODE = "wrong_code"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Issued:
    """What the mail carries (returned for tests and the demo; never logged)."""

    login_id: int
    link: str
    code: str


def normalised_address(text: str) -> str:
    """Staff addresses are stored lower-cased (mailbot.staff); anything else is kept as typed,
    folded the same way, so that it is counted and audited like an address."""
    try:
        return normalise_email(text).lower()[:320]
    except InvalidEmail:
        return unicodedata.normalize("NFKC", text).strip().lower()[:320]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, salt: bytes, message: bytes) -> bytes:
    return hmac.new(secret, salt + b":" + message, hashlib.sha256).digest()


def link_text(keys: Keyring, nonce: bytes) -> str:
    mac = _mac(keys.current.material, LINK_SALT, nonce)[:MAC_BYTES]
    return f"{_b64(nonce)}.{_b64(mac)}"


def _link_nonce(keys: Keyring, text: str, now: datetime) -> bytes | LoginRefusal:
    """The nonce of a well-formed link signed by a key that verifies at ``now``."""
    encoded_nonce, dot, encoded_mac = text.partition(".")
    if not dot or len(text) > 64:
        return LoginRefusal.MALFORMED
    try:
        nonce, mac = _unb64(encoded_nonce), _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        return LoginRefusal.MALFORMED
    if len(nonce) != NONCE_BYTES or len(mac) != MAC_BYTES:
        return LoginRefusal.MALFORMED
    for secret in keys.verifying(now):
        if hmac.compare_digest(mac, _mac(secret, LINK_SALT, nonce)[:MAC_BYTES]):
            return nonce
    return LoginRefusal.BAD_SIGNATURE


def _link_hash(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()


def _code_mac(secret: bytes, login_id: int, code: str) -> str:
    return _mac(secret, CODE_SALT, f"{login_id}:{code}".encode()).hex()


def normalised_code(text: str) -> str:
    """Digits only: full-width digits, spaces and hyphens as people type them."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isdigit())[:32]


def audit(session: Session, event: str, actor: str, now: datetime, **detail: Any) -> None:
    session.add(
        AuditEvent(at=now, application_id=None, event=event, actor=actor[:320], detail=detail)
    )


def _refuse(
    session: Session, refusal: LoginRefusal, actor: str, now: datetime, **detail: Any
) -> LoginRefusal:
    log.warning("console login refused: %s (%s)", refusal, actor[:80])
    audit(session, "console_login_refused", actor or "unknown", now, reason=str(refusal), **detail)
    return refusal


# --- asking ----------------------------------------------------------------------------------


def ask_for_link(
    session: Session, settings: Settings, typed: str, *, now: datetime, client: str
) -> Issued | None:
    """Someone asked for a login link for ``typed``: mail one when it is an active staff
    member within the rate limit; None otherwise (and the caller shows the same page)."""
    address = normalised_address(typed)
    if not take(session, f"ask:{address}", settings.console_link_requests_per_hour, now):
        _refuse(session, LoginRefusal.RATE_LIMITED, address, now, client=client, step="ask")
        return None
    member = session.exec(select(Staff).where(Staff.email == address)).first()
    if member is None or not member.active:
        reason = LoginRefusal.NOT_STAFF if member is None else LoginRefusal.STAFF_INACTIVE
        _refuse(session, reason, address, now, client=client, step="ask")
        return None
    assert member.id is not None
    # Logins a day past their expiry are of no more use (the audit log keeps what happened).
    session.execute(delete(ConsoleLogin).where(col(ConsoleLogin.expires_at) < now - KEPT))
    keys = keyring(session, settings)
    nonce = secrets.token_bytes(NONCE_BYTES)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    expires = now + timedelta(minutes=settings.console_link_minutes)
    login = ConsoleLogin(
        staff_id=member.id,
        link_hash=_link_hash(nonce),
        code_mac="",
        created_at=now,
        expires_at=expires,
    )
    session.add(login)
    session.flush()
    assert login.id is not None
    login.code_mac = _code_mac(keys.current.material, login.id, code)
    session.add(login)
    link = settings.base_url + LOGIN_PATH + link_text(keys, nonce)
    zoned = expires.astimezone(settings.zone)
    queue_staff_mail(
        session,
        settings,
        member,
        notices.CONSOLE_LOGIN,
        {
            "link": link,
            "code": f"{code[:4]} {code[4:]}",
            "minutes": f"{settings.console_link_minutes:g}",
            "expires": zoned.strftime("%Y-%m-%d %H:%M"),
            "login_page": settings.base_url + "/staff/login",
        },
        # The link's hash, not the row id: ids of deleted old logins come back on SQLite, and
        # a reused id would make the new mail a "duplicate" of an old one, never sent.
        cause=f"console-login:{login.link_hash[:32]}",
        now=now,
    )
    audit(
        session,
        "console_login_issued",
        member.email,
        now,
        login_id=login.id,
        expires_at=expires.isoformat(),
        client=client,
    )
    log.info("console login link mailed to %s (login %d)", member.email, login.id)
    return Issued(login.id, link, code)


# --- redeeming -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCheck:
    login: ConsoleLogin | None
    staff: Staff | None
    refusal: LoginRefusal | None


def check_link(
    session: Session, settings: Settings, text: str, now: datetime, *, lock: bool = False
) -> LinkCheck:
    """Whether the link would log in now; changes nothing (the GET of the link)."""
    keys = verifying_keyring(
        session,
        settings,
        lambda ring: _link_nonce(ring, text, now) is not LoginRefusal.BAD_SIGNATURE,
    )
    nonce = _link_nonce(keys, text, now)
    if isinstance(nonce, LoginRefusal):
        return LinkCheck(None, None, nonce)
    query = select(ConsoleLogin).where(ConsoleLogin.link_hash == _link_hash(nonce))
    if lock:
        query = query.with_for_update()
    login = session.exec(query).first()
    if login is None:
        return LinkCheck(None, None, LoginRefusal.UNKNOWN)
    staff = session.get(Staff, login.staff_id)
    return LinkCheck(login, staff, _login_refusal(login, staff, now))


def _login_refusal(login: ConsoleLogin, staff: Staff | None, now: datetime) -> LoginRefusal | None:
    if login.used_at is not None:
        return LoginRefusal.USED
    if as_utc(login.expires_at) <= now:
        return LoginRefusal.EXPIRED
    if staff is None or not staff.active:
        return LoginRefusal.STAFF_INACTIVE
    return None


def refuse_link(
    session: Session, check: LinkCheck, now: datetime, *, client: str, step: str
) -> None:
    """Record a refused link (its GET or its POST)."""
    assert check.refusal is not None
    actor = check.staff.email if check.staff else "unknown"
    login_id = check.login.id if check.login else None
    _refuse(session, check.refusal, actor, now, client=client, step=step, login_id=login_id)


def redeem_link(
    session: Session, settings: Settings, text: str, now: datetime, *, client: str
) -> Staff | LoginRefusal:
    """The POST of the confirmation page: the staff member to log in, or why not."""
    check = check_link(session, settings, text, now, lock=True)
    if check.refusal is not None:
        refuse_link(session, check, now, client=client, step="confirm")
        return check.refusal
    assert check.login is not None and check.staff is not None
    return _redeemed(session, check.login, check.staff, now, client=client, via="link")


def redeem_code(
    session: Session, settings: Settings, typed: str, code_text: str, now: datetime, *, client: str
) -> Staff | LoginRefusal:
    """A code typed with an address on the login page: the staff member to log in, or why not.

    Right or wrong, each try counts against the address's hourly tries; a wrong one also
    against each login waiting for that member, whose code stops working after
    MAX_CODE_TRIES. An address that is no staff member's is refused the same way.
    """
    address = normalised_address(typed)
    if not take(session, f"code:{address}", settings.console_code_tries_per_hour, now):
        return _refuse(session, LoginRefusal.RATE_LIMITED, address, now, client=client, step="code")
    code = normalised_code(code_text)
    member = session.exec(select(Staff).where(Staff.email == address)).first()
    if member is None or not member.active:
        reason = LoginRefusal.NOT_STAFF if member is None else LoginRefusal.STAFF_INACTIVE
        return _refuse(session, reason, address, now, client=client, step="code")
    query = (
        select(ConsoleLogin)
        .where(ConsoleLogin.staff_id == member.id)
        .where(col(ConsoleLogin.used_at).is_(None))
        .where(col(ConsoleLogin.expires_at) > now)
        .where(col(ConsoleLogin.code_tries) < MAX_CODE_TRIES)
        .order_by(col(ConsoleLogin.id).desc())
        .with_for_update()
    )
    waiting = list(session.exec(query))
    secrets_now = list(keyring(session, settings).verifying(now))
    for login in waiting:
        assert login.id is not None
        for secret in secrets_now:
            if hmac.compare_digest(login.code_mac, _code_mac(secret, login.id, code)):
                return _redeemed(session, login, member, now, client=client, via="code")
    for login in waiting:
        login.code_tries += 1
        session.add(login)
    return _refuse(session, LoginRefusal.WRONG_CODE, address, now, client=client, step="code")


def _redeemed(
    session: Session, login: ConsoleLogin, staff: Staff, now: datetime, *, client: str, via: str
) -> Staff:
    login.used_at = now
    session.add(login)
    audit(
        session,
        "console_login_redeemed",
        staff.email,
        now,
        login_id=login.id,
        via=via,
        client=client,
    )
    log.info("console login by %s (%s)", staff.email, via)
    return staff
