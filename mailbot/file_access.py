"""Files this process must read or write, checked before they are used, so that a refusal names
the file, the user this process runs as, and what to do (not "attempt to write a readonly
database" at the first INSERT)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from db.dialect import sqlite_file
from db.engine import Turnstile
from mailbot.errors import ConfigError


def process_user() -> str:
    """Who this process runs as, for messages about permissions: "user 'mailbot' (uid 998)"."""
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_database_access(url: str) -> None:
    """For a SQLite database in a file, :func:`check_sqlite_access`; nothing for PostgreSQL
    (the server owns its files) or an in-memory database."""
    database = sqlite_file(url)
    if database is not None:
        check_sqlite_access(database)


def check_sqlite_access(database: Path) -> None:
    """Fail now, naming the path and the user, when this process could not write ``database``.

    Every SQLite connection in WAL mode writes: the database, its ``-wal`` and ``-shm`` files,
    and the folder they are created in. Without this, a pipe run as the wrong user (or a
    database created by root) answers "attempt to write a readonly database" at the first
    INSERT, naming neither.
    """
    folder = database.absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"MAILBOT_DATABASE_URL: cannot create the folder {folder} for the database as "
            f"{process_user()}: {exc.strerror}; set MAILBOT_HOME (or home in "
            "/etc/mailbot/mailbot.toml) to a folder that user owns"
        ) from None
    unwritable = [
        path
        for path in (
            database,
            Path(f"{database}-wal"),
            Path(f"{database}-shm"),
            *Turnstile.files_of(database),
        )
        if path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ]
    if not os.access(folder, os.W_OK | os.X_OK):
        unwritable.insert(0, folder)
    if unwritable:
        raise ConfigError(
            f"the database {database} is not writable by {process_user()}: "
            f"{', '.join(map(str, unwritable))} must be writable by that user. Run mailbot as "
            "the user that owns them (the install makes that user mailbot), or fix their owner "
            "or mode"
        )
