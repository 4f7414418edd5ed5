"""SQLite writers of different processes take turns (db.engine.Turnstile): a writer that
commits and comes straight back goes after the one that was waiting, so a busy worker process
cannot keep the gateway's commits (and so its 250s) waiting. SQLite only: PostgreSQL has no
single write lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text

from db.engine import Turnstile, make_engine
from db.migrate import upgrade


def someone_waits(database: Path) -> bool:
    """Whether a writer holds the waiting room (it is queued for the turn)."""
    fd = os.open(Turnstile.files_of(database)[0], os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_writer_coming_straight_back_goes_after_the_one_waiting(tmp_path: Path) -> None:
    database = tmp_path / "mailbot.db"
    url = f"sqlite:///{database}"
    # Two engines: two turnstiles with their own lock-file descriptors, as two processes have.
    busy, waiting = make_engine(url), make_engine(url)
    upgrade(busy)
    order: list[str] = []
    first_holds = threading.Event()

    def waiter() -> None:
        first_holds.wait()
        with waiting.begin() as conn:
            conn.execute(text("INSERT INTO registration_date (day) VALUES ('2027-01-04')"))
            order.append("waiting")

    thread = threading.Thread(target=waiter)
    thread.start()
    with busy.begin() as conn:
        conn.execute(text("INSERT INTO registration_date (day) VALUES ('2027-01-05')"))
        first_holds.set()
        deadline = time.monotonic() + 30
        while not someone_waits(database):  # the other writer queues for the turn
            assert time.monotonic() < deadline, "the second writer never queued"
            time.sleep(0.01)
        order.append("busy")
    with busy.begin() as conn:  # straight back, as the worker's next transaction
        conn.execute(text("INSERT INTO registration_date (day) VALUES ('2027-01-06')"))
        order.append("busy again")
    thread.join(30)
    assert order == ["busy", "waiting", "busy again"]
    busy.dispose()
    waiting.dispose()
