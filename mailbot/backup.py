"""``mailbot db backup PATH``: a consistent copy of a SQLite database taken while mailbot runs.

SQLite's online backup API copies the database page by page under its own locking, so the
copy is one committed state even while the gateway and the worker keep writing (copying the
file would not be: the WAL holds the latest commits). The copy is written next to ``PATH``
and renamed into place only after ``PRAGMA integrity_check`` passed, so ``PATH`` is either a
whole, checked backup or absent. The signing keys live in the database, so the backup has
them: links and reply addresses mailed before it still work after a restore.

PostgreSQL has its own tools for this (``pg_dump``), which mailbot does not replace.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from db.dialect import is_sqlite, sqlite_file
from mailbot.errors import MailbotError

# Pages copied per step: between steps writers get the database (a step is a few ms), and a
# writer's commit makes the backup start over only for pages it changed.
PAGES_PER_STEP = 1024


class BackupError(MailbotError):
    """The backup could not be made; ``PATH`` was left as it was."""


@dataclass(frozen=True)
class Backup:
    path: Path
    size_bytes: int


def backup_database(engine: Engine, target: Path) -> Backup:
    """Copy the SQLite database behind ``engine`` to ``target`` (which must not exist)."""
    if not is_sqlite(engine):
        raise BackupError(
            "this database is PostgreSQL: back it up with its own tools, e.g. "
            "pg_dump --format=custom --file=mailbot.dump DBNAME (the signing keys are in the "
            "table signing_key, so the dump includes them); restore with pg_restore"
        )
    source = sqlite_file(engine.url)
    if source is None:
        raise BackupError("the database is in memory; there is nothing to back up")
    target = target.expanduser().absolute()
    if target.exists():
        raise BackupError(f"{target} exists; name a new file (a backup never overwrites)")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder; create it first")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        _copy(source, partial)
        _check(partial)
        os.link(partial, target)  # fails, rather than replaces, if target appeared meanwhile
    except (sqlite3.Error, OSError) as exc:
        raise BackupError(f"backup to {target} failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size)


def _copy(source: Path, destination: Path) -> None:
    if not source.is_file():  # connecting would create an empty database there
        raise BackupError(f"there is no database at {source}; check MAILBOT_DATABASE_URL")
    src = sqlite3.connect(source)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        # The copy is a standalone file: no WAL beside it to lose when it is moved.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    os.chmod(destination, 0o600)  # it holds personal data and the signing keys


def _check(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        (verdict,) = connection.execute("PRAGMA integrity_check").fetchone()
    finally:
        connection.close()
    if verdict != "ok":
        raise sqlite3.DatabaseError(f"the copy failed its integrity check: {verdict}")
