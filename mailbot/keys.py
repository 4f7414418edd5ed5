"""The keyring: the keys that sign and verify tokens, kept in the database so that every mailbot
process on it signs and verifies with the same ones.

* **One current key signs**; retired keys still verify until the longest token they signed has
  expired, then stop. Reply tokens name their key (``token.key_id``) and carry their expiry in
  the database, so a retired key's bound for them is exact; link tokens are stored nowhere, so
  their bound is the retirement plus ``SIGNING_GRACE`` plus ``MAILBOT_LINK_TOKEN_DAYS``.
* ``ensure_signing_key`` makes the first key (``mailbot db upgrade`` and ``serve`` call it),
  importing ``$MAILBOT_HOME/secret_key``, the key of earlier versions, so that links and reply
  addresses already mailed keep working. ``rotate`` makes a new current key.
* ``revoke`` is for a key that leaked: it stops verifying (in this process at once, in others
  within RELOAD_SECONDS), whatever it signed (the links and reply addresses it signed stop
  working), and when it was the current key a new one takes its place.
* ``MAILBOT_SECRET_KEY``, when set, overrides all of it: it is then the only key, signing and
  verifying, and the keys in the database are not used (they are still made, rotated and
  listed, for the day the setting is removed).

Key material is secret: it is never printed or logged (``SigningKey`` leaves it out of its repr,
``Key`` too, and ``KeyInfo``, what the command line shows, does not hold it).
"""

from __future__ import annotations

import logging
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, func, text
from sqlmodel import Session, col, select

from db.dialect import is_postgresql
from db.engine import session_scope
from db.models import SigningKey, Token
from mailbot.clock import as_utc, utc_now
from mailbot.config import MIN_SECRET_KEY_LENGTH, SECRET_KEY_FILE, Settings
from mailbot.errors import ConfigError

log = logging.getLogger("mailbot.keys")

# A process signs with the keyring it read at most this long ago, so for up to this long after
# a rotation made elsewhere it still signs with the old key. That is harmless (the old key keeps
# verifying) and spares a query for every notice. Verifying never waits for it: a signature
# that no key of the process's keyring made reloads the keys at once (verifying_keyring).
# Reading them at each use instead: end to end -8 to -11 % (bench/intake.py (c), three series).
RELOAD_SECONDS = 10.0
# How long after its retirement a key may still have signed a link: RELOAD_SECONDS above, with
# room for a long transaction and for clocks that differ between machines.
SIGNING_GRACE = timedelta(hours=1)
NO_KEYS = (
    "there is no signing key in the database: run `mailbot db upgrade` (it creates one, "
    "importing $MAILBOT_HOME/secret_key when there is one)"
)


@dataclass(frozen=True)
class Key:
    id: int | None  # None: MAILBOT_SECRET_KEY, which is not in the database
    material: bytes = field(repr=False)
    verifies_until: datetime | None = None  # None: no end (the current key, the override)


@dataclass(frozen=True)
class Keyring:
    """The current key, which signs, and the retired keys, which verify until their bound."""

    current: Key
    retired: tuple[Key, ...] = ()

    def verifying(self, now: datetime) -> tuple[bytes, ...]:
        """The keys that verify a token at ``now``, the current one first."""
        live = [
            k.material for k in self.retired if k.verifies_until is None or now < k.verifies_until
        ]
        return (self.current.material, *live)


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key (``mailbot keys list``): never its material."""

    id: int
    created_at: datetime
    retired_at: datetime | None
    imported: bool
    verifies_until: datetime | None  # None while it is the current key
    revoked_at: datetime | None = None

    @property
    def current(self) -> bool:
        return self.retired_at is None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "current" if self.current else "retired"

    def verifies(self, now: datetime) -> bool:
        return self.verifies_until is None or now < self.verifies_until

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "age_days": round((now - self.created_at).total_seconds() / 86400, 1),
            "state": self.state,
            "retired_at": self.retired_at.isoformat(timespec="seconds")
            if self.retired_at
            else None,
            "verifies_until": self.verifies_until.isoformat(timespec="seconds")
            if self.verifies_until
            else None,
            "verifies": self.verifies(now),
            "imported": self.imported,
        }


# --- making keys -------------------------------------------------------------------------------


def ensure_signing_key(engine: Engine, settings: Settings, now: datetime | None = None) -> str:
    """Make sure the database has a current key; what was done, for the operator.

    On an empty table the key of ``$MAILBOT_HOME/secret_key`` becomes the current key when the
    file exists (links already mailed keep working), else a new random one. A file whose key
    the table lacks while it has keys (a second instance that had its own file) is imported as a
    retired key, so its links keep working too until they expire. Idempotent, and safe when two
    processes start at once: the table is locked (PostgreSQL) or the write lock is taken first
    (SQLite: every transaction begins with BEGIN IMMEDIATE).
    """
    now = now or utc_now()
    path = settings.home / SECRET_KEY_FILE
    file_key = _key_file(path)
    with session_scope(engine) as session:
        _lock(session)
        rows = _rows(session)
        if file_key is not None and file_key not in {row.material for row in rows}:
            has_current = any(row.retired_at is None for row in rows)
            row = SigningKey(
                material=file_key,
                created_at=now,
                retired_at=now if has_current else None,
                imported=True,
            )
            session.add(row)
            session.flush()
            done = f"imported the key of {path} as signing key {row.id}" + (
                " (retired: it verifies what it signed until that expires)" if has_current else ""
            )
        elif not any(row.retired_at is None for row in rows):
            row = SigningKey(material=new_material(), created_at=now)
            session.add(row)
            session.flush()
            done = f"created signing key {row.id}"
        else:
            return "signing keys in place"
    _forget(engine)
    log.info("%s", done)
    return done


def _key_file(path: Path) -> str | None:
    """The key in the file earlier versions made, or None when there is none to import."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the old signing key file {path} ({exc.strerror}): make it readable "
            "for this user, or delete it (links and reply addresses it signed stop working)"
        ) from None
    if not key:
        return None
    if len(key) < MIN_SECRET_KEY_LENGTH:
        # A short key lets anyone sign a link: not worth keeping old links working for.
        log.warning(
            "%s holds a key shorter than %d characters: not imported (links and reply "
            "addresses it signed no longer work)",
            path,
            MIN_SECRET_KEY_LENGTH,
        )
        return None
    return key


def rotate(engine: Engine, settings: Settings, now: datetime | None = None) -> list[KeyInfo]:
    """Make a new current key; the current one retires and verifies until its tokens expire.

    Returns every key afterwards, the new one first. Other processes sign with the new key
    within RELOAD_SECONDS and verify with it at once.
    """
    now = now or utc_now()
    with session_scope(engine) as session:
        _lock(session)
        rows = _rows(session)
        if not any(row.retired_at is None for row in rows):
            raise ConfigError(NO_KEYS)
        for row in rows:
            if row.retired_at is None:
                row.retired_at = now
                session.add(row)
        session.add(SigningKey(material=new_material(), created_at=now))
        session.flush()
        described = describe(session, settings)
    _forget(engine)
    log.info("rotated the signing keys: key %d is now current", described[0].id)
    return described


@dataclass(frozen=True)
class Revocation:
    """What ``revoke`` did: the keys afterwards (newest first), whether the revoked key was
    the current one (a new key then took its place), and how many reply tokens it signed that
    had not expired nor been used: the reply addresses that no longer work."""

    revoked: int
    keys: list[KeyInfo]
    was_current: bool
    already: bool
    reply_tokens_lost: int


def revoke(
    engine: Engine, settings: Settings, key_id: int, now: datetime | None = None
) -> Revocation:
    """Revoke key ``key_id`` (it leaked): from ``now`` on it verifies nothing, in this process
    at once and in others within RELOAD_SECONDS. Were it the current key, a new current key is
    made in the same transaction, so signing never stops. Revoking a revoked key changes
    nothing (``already``)."""
    now = now or utc_now()
    with session_scope(engine) as session:
        _lock(session)
        rows = _rows(session)
        row = next((r for r in rows if r.id == key_id), None)
        if row is None:
            known = ", ".join(str(_id(r)) for r in rows) or "none"
            raise ConfigError(
                f"there is no signing key {key_id} (keys: {known}; `mailbot keys list` shows them)"
            )
        already = row.revoked_at is not None
        was_current = row.retired_at is None
        lost = 0
        if not already:
            lost = _live_reply_tokens(session, row, now)
            row.revoked_at = now
            if was_current:
                row.retired_at = now
                session.add(SigningKey(material=new_material(), created_at=now))
            session.add(row)
            session.flush()
        described = describe(session, settings)
    _forget(engine)
    if not already:
        log.warning(
            "signing key %d revoked: what it signed no longer verifies (%d reply tokens)%s",
            key_id,
            lost,
            f"; key {described[0].id} is now current" if was_current else "",
        )
    return Revocation(key_id, described, was_current, already, lost)


def _live_reply_tokens(session: Session, row: SigningKey, now: datetime) -> int:
    """Reply tokens ``row`` signed that are neither used nor expired."""
    signed_by = col(Token.key_id) == row.id
    if row.imported:  # it signed the tokens issued before keys were recorded
        signed_by = signed_by | col(Token.key_id).is_(None)
    query = (
        select(func.count())
        .select_from(Token)
        .where(signed_by, col(Token.used_at).is_(None), col(Token.expires_at) > now)
    )
    return int(session.exec(query).one())


def new_material() -> str:
    return secrets.token_urlsafe(48)  # 384 bits


def describe(session: Session, settings: Settings) -> list[KeyInfo]:
    """Every key in the database, newest first, with until when it verifies."""
    rows = _rows(session)
    return [
        KeyInfo(
            id=_id(row),
            created_at=as_utc(row.created_at),
            retired_at=as_utc(row.retired_at) if row.retired_at else None,
            imported=row.imported,
            verifies_until=_bound(session, row, settings) if row.retired_at else None,
            revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        )
        for row in rows
    ]


def _lock(session: Session) -> None:
    """Serialise changes of the keys between processes (readers are not blocked)."""
    if is_postgresql(session):  # SQLite: BEGIN IMMEDIATE already serialises them
        session.execute(text("LOCK TABLE signing_key IN SHARE ROW EXCLUSIVE MODE"))


def _rows(session: Session) -> Sequence[SigningKey]:
    return session.exec(select(SigningKey).order_by(col(SigningKey.id).desc())).all()


def _bound(session: Session, row: SigningKey, settings: Settings) -> datetime:
    """Until when a retired key verifies: its last link, or its longest-lived reply token
    (review, applicant or cancel: their expiry is in their row), whichever expires later.

    Links are stored nowhere, so their part uses today's MAILBOT_LINK_TOKEN_DAYS: lowering it
    shortens how long links mailed before the rotation keep opening. A revoked key: its
    revocation."""
    assert row.retired_at is not None
    if row.revoked_at is not None:
        return as_utc(row.revoked_at)
    bound = as_utc(row.retired_at) + SIGNING_GRACE + timedelta(days=settings.link_token_days)
    signed_by = [col(Token.key_id) == row.id]
    if row.imported:  # it signed the tokens issued before keys were recorded
        signed_by.append(col(Token.key_id).is_(None))
    for condition in signed_by:
        longest = session.exec(select(func.max(Token.expires_at)).where(condition)).one()
        if longest is not None:
            bound = max(bound, as_utc(longest))
    return bound


def _id(row: SigningKey) -> int:
    assert row.id is not None
    return row.id


# --- using keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    keyring: Keyring
    at: float  # time.monotonic()
    link_token_days: float


# Each engine's keyring as this process last read it (a database per engine). Not a setting
# passed down, because every signer already holds a session, and a module-level cache keyed by
# the engine lets them all share one read (as db.engine keys its SQLite turnstiles).
_LOADED: weakref.WeakKeyDictionary[Engine, _Loaded] = weakref.WeakKeyDictionary()


def keyring(session: Session, settings: Settings) -> Keyring:
    """The keys to sign with: ``MAILBOT_SECRET_KEY`` when set, else the database's, as this
    process read them at most RELOAD_SECONDS ago (read in ``session``'s transaction: on SQLite
    a second connection would wait for this one's write lock)."""
    if settings.secret_key is not None:
        return _override(settings)
    engine = _engine(session)
    loaded = _LOADED.get(engine)
    if (
        loaded is None
        or time.monotonic() - loaded.at > RELOAD_SECONDS
        or loaded.link_token_days != settings.link_token_days
    ):
        return _reload(session, settings)
    return loaded.keyring


def verifying_keyring(
    session: Session, settings: Settings, signed: Callable[[Keyring], bool]
) -> Keyring:
    """The keys to check a token with: this process's, or, when none of them made its signature
    (``signed`` is false), the keys read again from the database at once, because another
    process may have rotated them since. Reading again on every failed check is one small
    query; a forger who sends bad tokens costs the database no more than a real link does."""
    ring = keyring(session, settings)
    if settings.secret_key is not None or signed(ring):
        return ring
    return _reload(session, settings)


def _reload(session: Session, settings: Settings) -> Keyring:
    rows = _rows(session)
    current = [row for row in rows if row.retired_at is None]
    if not current:
        raise ConfigError(NO_KEYS)
    # Exactly one row is current (changes are serialised); were there more, all would verify.
    # A revoked key is left out altogether: it verifies nothing.
    retired = tuple(
        Key(
            _id(row),
            row.material.encode(),
            _bound(session, row, settings) if row.retired_at else None,
        )
        for row in rows
        if row is not current[0] and row.revoked_at is None
    )
    ring = Keyring(Key(_id(current[0]), current[0].material.encode()), retired)
    _LOADED[_engine(session)] = _Loaded(ring, time.monotonic(), settings.link_token_days)
    return ring


def _forget(engine: Engine) -> None:
    """This process changed the keys: read them again at the next use."""
    _LOADED.pop(engine, None)


def _override(settings: Settings) -> Keyring:
    assert settings.secret_key is not None
    # As typed, as earlier versions used it: stripping it would break what they signed.
    return Keyring(Key(None, settings.secret_key.get_secret_value().encode()))


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind
