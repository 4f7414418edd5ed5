"""The one engine factory: SQLite tuned for a single busy process, or PostgreSQL via psycopg 3."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from db.dialect import sqlite_file

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        url_text = parsed.render_as_string(hide_password=False)
        return _sqlite_engine(url_text, sqlite_file(parsed), echo)
    return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_engine(url: str, database: Path | None, echo: bool) -> Engine:
    if database is not None:
        # Where a command runs, mailbot.file_access has checked the files and made the folder
        # (naming the user when it cannot); here the folder is made for every other caller.
        database.absolute().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN IMMEDIATE below
        # is what actually starts each transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")  # a 250 promises the bytes survive power loss
        cursor.close()

    turnstile = Turnstile(database)
    _TURNSTILES[engine] = turnstile

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers queue at the turnstile (see Turnstile): SQLite's own busy handler makes
        # waiters sleep and poll, so a busy writer (the intake worker) that commits and
        # begins again at once would starve the others (the SMTP gateway's 250s).
        turnstile.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000)
        connection.info[_HOLDS_TURNSTILE] = True
        try:
            # A deferred transaction that reads and then writes fails at once with
            # SQLITE_BUSY when another process's writer got there first (the busy timeout
            # does not apply to the lock upgrade). Taking the write lock up front makes
            # writers queue instead.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Any) -> None:
        if connection.info.pop(_HOLDS_TURNSTILE, False):
            turnstile.release()

    def _release_record(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        # Safety net: a connection invalidated or returned mid-transaction still lets go.
        if record is not None and record.info.pop(_HOLDS_TURNSTILE, False):
            turnstile.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
    event.listen(engine.pool, "checkin", _release_record)
    event.listen(engine.pool, "invalidate", _release_record)
    return engine


_HOLDS_TURNSTILE = "mailbot_holds_turnstile"
# Each SQLite engine's turnstile, for writers that use a driver connection directly.
_TURNSTILES: weakref.WeakKeyDictionary[Engine, Turnstile] = weakref.WeakKeyDictionary()


@contextmanager
def driver_transaction(engine: Engine, *, urgent: bool = False) -> Iterator[Any]:
    """One transaction on a pooled driver (DB-API) connection; yields its cursor.

    For a hot path where SQLAlchemy's per-statement work matters: the SMTP gateway's writer
    thread, whose every line of Python is taken from the event loop's share of the GIL. The
    rules are the engine's own: on SQLite the writer queues at this process's turnstile and
    takes the write lock up front (BEGIN IMMEDIATE); commit on success, roll back on any
    exception, and the connection goes back to the pool either way. An ``urgent`` writer is
    one a client waits for (the gateway's 250s): see :func:`urgent_writer_waited`.
    """
    connection = engine.raw_connection()
    try:
        turnstile = turnstile_of(engine)
        if turnstile is not None:
            turnstile.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000, urgent=urgent)
        try:
            cursor = connection.cursor()
            if turnstile is not None:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            if turnstile is not None:
                turnstile.release()
    finally:
        connection.close()  # back to the pool


# serve --only smtp beside a worker process: 0.03-0.04 -> 0.20-0.29 x a sink (bench/gateway.py)
class Turnstile:
    """Where SQLite writers queue for the one write lock, in this process and across processes.

    In this process, a plain lock (a first-come, first-served one measured no better,
    docs/performance.md). Across processes (the gateway as ``serve --only smtp`` beside a worker
    process), two lock files beside the database: a writer takes ``-writer-next`` (the waiting
    room), then ``-writer`` (the turn), then lets go of the waiting room, and of the turn after
    its commit. A writer that finishes and comes straight back finds the waiting room held by
    whoever waits for the turn, so the turn alternates. Without them the worker process committed
    and began again before the gateway's sleeping busy handler looked, and the gateway all but
    stopped answering while a worker process drained (bench/gateway.py; the figures in
    docs/performance.md).

    The file locks are waited for blocking (a waiter is woken the moment the turn is free;
    polling instead slowed the gateway down, docs/performance.md). They have no
    timeout: every holder is a transaction that either commits or, waiting for SQLite's own
    lock held by some other program, gives up after the busy timeout; a process that dies
    lets go at once (the kernel drops its locks).

    Whoever lets go of the turn learns whether an *urgent* writer was waiting for it: one a
    client waits for (the gateway's commits: every session's 250), in this process or another.
    An urgent writer of another process holds a shared lock on a third file, ``-writer-urgent``,
    while it waits. The intake worker then gives way for a while (``mailbot.worker.GIVE_WAY``):
    alternate turns alone still made each of the gateway's commits wait for one worker
    transaction.
    """

    def __init__(self, database: Path | None) -> None:
        self._local = threading.Lock()
        self._paths = self.files_of(database) if database is not None else ()
        self._fds: tuple[int, int, int] | None = None  # opened by the first writer
        self._urgent_here = 0  # urgent writers of this process waiting for the local lock
        self._count = threading.Lock()
        self._last_release = threading.local()  # per thread: did an urgent writer wait?

    @staticmethod
    def files_of(database: Path) -> tuple[Path, Path, Path]:
        """The lock files beside ``database`` (they hold no data; any writer recreates them):
        the waiting room, the turn, and where urgent writers say that they wait."""
        return (
            Path(f"{database}-writer-next"),
            Path(f"{database}-writer"),
            Path(f"{database}-writer-urgent"),
        )

    def acquire(self, timeout: float, *, urgent: bool = False) -> None:
        """Wait for this process's turn (``timeout``, else TimeoutError), then the files'."""
        if urgent:
            with self._count:
                self._urgent_here += 1
        try:
            got = self._local.acquire(timeout=timeout)
        finally:
            if urgent:
                with self._count:
                    self._urgent_here -= 1
        if not got:
            raise TimeoutError("waited too long for the database write lock")
        try:
            if self._paths:
                self._take_turn(urgent)
        except BaseException:
            self._local.release()
            raise

    def release(self) -> None:
        self._last_release.urgent_waited = self.urgent_waiting()
        if self._fds is not None:
            fcntl.flock(self._fds[1], fcntl.LOCK_UN)
        self._local.release()

    def urgent_waited(self) -> bool:
        """Whether an urgent writer was queued for the turn when this thread last let go of it
        (in a deployment, the gateway as ``serve --only smtp`` is another process's)."""
        return bool(getattr(self._last_release, "urgent_waited", False))

    def urgent_waiting(self) -> bool:
        """Whether an urgent writer waits for the turn now; for the turn's holder to ask."""
        if self._urgent_here:
            return True
        if self._fds is None:
            return False
        urgent = self._fds[2]  # shared-locked by every urgent writer of another process
        try:
            fcntl.flock(urgent, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(urgent, fcntl.LOCK_UN)
        return False

    def _take_turn(self, urgent: bool) -> None:
        # Only the holder of the local lock gets here, so one set of descriptors serves every
        # thread of the process (a flock belongs to the open file, not to a thread).
        if self._fds is None:
            waiting, turn, urgency = (
                os.open(p, os.O_RDWR | os.O_CREAT, 0o644) for p in self._paths
            )
            self._fds = waiting, turn, urgency
            weakref.finalize(self, _close, waiting, turn, urgency)
        waiting, turn, urgency = self._fds
        if urgent:  # said while it waits (a holder's test takes it exclusively, for a moment)
            fcntl.flock(urgency, fcntl.LOCK_SH)
        try:
            fcntl.flock(waiting, fcntl.LOCK_EX)  # blocking; the GIL is let go meanwhile
            try:
                fcntl.flock(turn, fcntl.LOCK_EX)
            finally:
                fcntl.flock(waiting, fcntl.LOCK_UN)
        finally:
            if urgent:
                fcntl.flock(urgency, fcntl.LOCK_UN)


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def urgent_writer_waited(engine: Engine) -> bool:
    """Whether, when this thread last committed (or rolled back) on ``engine``, an urgent writer
    (see :meth:`Turnstile.urgent_waited`) was waiting for SQLite's write lock. Always False on
    PostgreSQL: it has no single write lock, and nobody waits for another's transaction.
    """
    turnstile = turnstile_of(engine)
    return turnstile is not None and turnstile.urgent_waited()


def turnstile_of(engine: Engine) -> Turnstile | None:
    """Where ``engine``'s writers queue (None on PostgreSQL)."""
    return _TURNSTILES.get(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
