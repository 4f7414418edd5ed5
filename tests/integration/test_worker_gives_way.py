"""While mail arrives, intake first: on SQLite a worker transaction that the gateway had to wait
for is followed by a pause (mailbot.worker.GIVE_WAY), so the 250s of every waiting session come
sooner; with nobody waiting, and on PostgreSQL (no single write lock), the worker goes straight
on. The figures are bench/gateway.py's (docs/performance.md); this proves who gives way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import text

from db.engine import driver_transaction, turnstile_of
from mailbot import worker
from mailbot.calendar import BusinessCalendar
from mailbot.intake import IntakeContext, process_message
from tests.support.harness import Harness
from tests.support.requests import form, mail

START = date(2026, 12, 15)


@pytest.fixture
def gateway_writes_meanwhile(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[threading.Thread]]:
    """While the worker processes a message, the gateway commits (a thread of its own) and,
    on SQLite, has queued for the write lock before the worker's transaction ends."""
    turnstile = turnstile_of(harness.engine)
    real = process_message
    threads: list[threading.Thread] = []

    def process_while_the_gateway_waits(*args: object, **kwargs: object) -> str:
        thread = threading.Thread(target=_gateway_commit, args=(harness,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 30
        while turnstile is not None and not turnstile.urgent_waiting():
            assert time.monotonic() < deadline, "the gateway never queued"
            time.sleep(0.005)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("mailbot.worker.process_message", process_while_the_gateway_waits)
    yield threads
    for thread in threads:
        thread.join(30)


def _gateway_commit(harness: Harness) -> None:
    with driver_transaction(harness.engine, urgent=True) as cursor:
        cursor.execute("INSERT INTO registration_date (day) VALUES ('2027-03-01')")


def context(harness: Harness) -> IntakeContext:
    return IntakeContext(settings=harness.settings, calendar=BusinessCalendar())


def test_the_worker_gives_way_after_a_transaction_the_gateway_waited_for(
    harness: Harness, gateway_writes_meanwhile: list[threading.Thread]
) -> None:
    harness.send(mail(form("1ANACA0A", start=START)))
    began = time.monotonic()
    handled, pause = worker.process_then_give_way(harness.engine, context(harness), harness.now)
    took = time.monotonic() - began
    assert handled == 1
    for thread in gateway_writes_meanwhile:
        thread.join(30)
    with harness.engine.connect() as conn:  # the gateway's commit went through after it
        assert (
            conn.execute(
                text("SELECT count(*) FROM registration_date WHERE day = '2027-03-01'")
            ).scalar()
            == 1
        )
    if harness.engine.dialect.name == "sqlite":
        assert 0 < pause <= took * worker.GIVE_WAY
    else:  # PostgreSQL: the gateway never waited for the worker's transaction
        assert pause == 0


def test_with_nobody_waiting_the_worker_goes_straight_on(harness: Harness) -> None:
    harness.send(mail(form("1ANACA0A", start=START)))
    handled, pause = worker.process_then_give_way(harness.engine, context(harness), harness.now)
    assert (handled, pause) == (1, 0)
    assert [m.status for m in harness.inbound()] == ["done"]
