"""SQLite writers of different processes take turns (db.engine.Turnstile): a writer that
commits and comes straight back goes after the one that was waiting, so a busy worker process
cannot keep the gateway's commits (and so its 250s) waiting. SQLite only: PostgreSQL has no
single write lock."""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from db.engine import (
    Turnstile,
    driver_transaction,
    make_engine,
    turnstile_of,
    urgent_writer_waited,
)
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


# --- who waited: the worker gives way to the gateway (mailbot.worker.GIVE_WAY) --------------


_DAYS = itertools.count(10)


class Holder:
    """A write transaction in a thread of its own (the worker's) that commits once ``queued()``
    says the other writer waits; ``learnt`` is whether an urgent writer waited, as the
    committing thread learns it."""

    def __init__(self, engine: Engine, queued: Callable[[], bool]) -> None:
        self.inside = threading.Event()
        self.learnt: bool | None = None
        self._thread = threading.Thread(target=self._hold, args=(engine, queued))
        self._thread.start()
        assert self.inside.wait(30)

    def _hold(self, engine: Engine, queued: Callable[[], bool]) -> None:
        with engine.begin() as conn:
            day = f"2027-01-{next(_DAYS):02d}"
            conn.execute(text(f"INSERT INTO registration_date (day) VALUES ('{day}')"))
            self.inside.set()
            deadline = time.monotonic() + 30
            while not queued() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.learnt = urgent_writer_waited(engine)

    def result(self) -> bool | None:
        self._thread.join(30)
        return self.learnt


def write_in_thread(engine: Engine, day: str, *, gateway: bool) -> threading.Thread:
    """A writer in a thread of its own: the gateway's (urgent) or an ordinary one (the outbox)."""

    def write() -> None:
        statement = f"INSERT INTO registration_date (day) VALUES ('{day}')"
        if gateway:
            with driver_transaction(engine, urgent=True) as cursor:
                cursor.execute(statement)
        else:
            with engine.begin() as conn:
                conn.execute(text(statement))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'mailbot.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_a_writer_learns_that_the_gateway_waited_for_its_turn(sqlite_engine: Engine) -> None:
    turnstile = turnstile_of(sqlite_engine)
    assert turnstile is not None
    holder = Holder(sqlite_engine, turnstile.urgent_waiting)
    gateway = write_in_thread(sqlite_engine, "2027-02-02", gateway=True)
    assert holder.result() is True
    gateway.join(30)
    # The next transaction, with nobody waiting, learns that nobody did.
    assert Holder(sqlite_engine, lambda: True).result() is False


def test_an_ordinary_writer_waiting_is_not_the_gateway(sqlite_engine: Engine) -> None:
    # The outbox marking notices sent is background work too: the worker does not give way.
    asked = threading.Event()

    def queued() -> bool:  # it has asked for the turn, and had time to wait for it
        asked.wait(30)
        time.sleep(0.1)
        return True

    holder = Holder(sqlite_engine, queued)
    outbox = write_in_thread(sqlite_engine, "2027-02-03", gateway=False)
    asked.set()
    assert holder.result() is False
    outbox.join(30)
    with sqlite_engine.connect() as conn:  # it did wait, and then wrote
        assert conn.execute(text("SELECT count(*) FROM registration_date")).scalar() == 2


@pytest.mark.parametrize("gateway", [True, False], ids=["gateway", "outbox"])
def test_another_process_s_gateway_counts_and_its_outbox_does_not(
    tmp_path: Path, gateway: bool
) -> None:
    # In a deployment the gateway is `serve --only smtp`, a process of its own, and the outbox
    # may be one too: two engines, two turnstiles with their own lock-file descriptors.
    database = tmp_path / "mailbot.db"
    worker, other = make_engine(f"sqlite:///{database}"), make_engine(f"sqlite:///{database}")
    upgrade(worker)
    holder = Holder(worker, lambda: someone_waits(database))
    writer = write_in_thread(other, "2027-02-04", gateway=gateway)
    assert holder.result() is gateway
    writer.join(30)
    with worker.connect() as conn:  # it did wait, and then wrote
        assert conn.execute(text("SELECT count(*) FROM registration_date")).scalar() == 2
    worker.dispose()
    other.dispose()
