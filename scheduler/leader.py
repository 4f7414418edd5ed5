"""Who runs the scheduler: exactly one process per database holds the leader lock.

PostgreSQL: a session-level advisory lock, held on a dedicated connection for as long as the
process leads. When the process dies, even by kill -9, its connection closes and the server
frees the lock; another process polling :meth:`try_acquire` takes it over. A leader checks
:meth:`still_held` periodically (its connection alive = its session's lock held) and stops
scheduling when it fails, so a leader cut off from the database stops on its own.

SQLite: an exclusive ``flock`` on a file next to the database. One machine runs one ``serve``
on SQLite, but a second one started by mistake must not run a second scheduler; the kernel
frees the lock when the holder dies.

The lock keeps the scheduler single; it is not what keeps applying exactly-once. Applying
claims rows in the database, so even two leaders for a moment would not apply anything twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from db.dialect import is_postgresql, sqlite_file

log = logging.getLogger(__name__)

LOCK_NAME = "mailbot.scheduler"
# libpq keepalive and timeout parameters: a leader whose database vanishes without a TCP
# reset (a network partition) notices within about half a minute instead of TCP's minutes.
PG_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if free; True when this process holds it (now or already)."""
        ...

    def still_held(self) -> bool:
        """Whether the lock is still ours; False once it may have been lost."""
        ...

    def release(self) -> None: ...


def leader_lock_for(engine: Engine) -> LeaderLock:
    """The right lock for ``engine``'s database."""
    if is_postgresql(engine):
        return PostgresLeaderLock(engine)
    database = sqlite_file(engine.url)
    if database is not None:
        return FileLeaderLock(database.with_name(database.name + ".scheduler-lock"))
    return SoleProcess()


def advisory_key(schema: str) -> int:
    """A signed 64-bit advisory lock key for this schema.

    Advisory locks are per database, not per schema: two mailbots in two schemas of one
    database (the tests do this) must not share the scheduler.
    """
    digest = hashlib.blake2b(f"{LOCK_NAME}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLeaderLock:
    def __init__(self, engine: Engine) -> None:
        # Its own engine without a pool: the lock lives and dies with exactly one connection,
        # which nothing else may borrow or recycle. Autocommit: no transaction stays open.
        self._engine = create_engine(
            engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=PG_CONNECT_ARGS,
        )
        self._connection: Connection | None = None
        self._key: int | None = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._held:
            return self.still_held()
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
                schema = self._connection.execute(text("SELECT current_schema()")).scalar_one()
                self._key = advisory_key(str(schema))
            self._held = bool(
                self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                ).scalar_one()
            )
        except DBAPIError as exc:
            log.warning("scheduler lock: database unavailable: %s", exc)
            self._drop()
        return self._held

    def still_held(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            # A session-level advisory lock lasts as long as its session: if this connection
            # still answers, the lock is still ours.
            self._connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            log.error("scheduler lock: the lock connection failed: %s", exc)
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._connection is not None and self._held:
            with contextlib.suppress(DBAPIError):
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        self._held = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self._path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())  # for an operator wondering who holds it
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None  # an flock is held until its file is closed

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class SoleProcess:
    """An in-memory database: nobody else can see it, so this process always leads."""

    def __init__(self) -> None:
        self._held = False

    def try_acquire(self) -> bool:
        self._held = True
        return True

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False
