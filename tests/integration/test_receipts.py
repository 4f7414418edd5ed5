"""Receipt numbers under concurrency, on SQLite and PostgreSQL: unique, contiguous, per year."""

from __future__ import annotations

import multiprocessing
from datetime import date

from sqlalchemy import Engine

from db.engine import make_engine, session_scope
from mailbot.receipts import allocate_receipt_no

WORKERS = 4
PER_WORKER = 250


def _allocate_many(url: str, count: int) -> list[str]:
    engine = make_engine(url)
    numbers = []
    for _ in range(count):
        with session_scope(engine) as session:
            numbers.append(allocate_receipt_no(session, date(2026, 11, 28)))
    engine.dispose()
    return numbers


def test_four_processes_get_1000_unique_contiguous_numbers(
    engine: Engine, database_url: str
) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        results = pool.starmap(_allocate_many, [(database_url, PER_WORKER)] * WORKERS)
    numbers = [n for chunk in results for n in chunk]
    assert len(numbers) == len(set(numbers)) == WORKERS * PER_WORKER
    assert sorted(numbers) == [f"26{n:04d}A" for n in range(1, WORKERS * PER_WORKER + 1)]


def test_year_rollover_restarts_the_serial(engine: Engine) -> None:
    with session_scope(engine) as session:
        first_2026 = allocate_receipt_no(session, date(2026, 12, 31))
        second_2026 = allocate_receipt_no(session, date(2026, 12, 31))
        first_2027 = allocate_receipt_no(session, date(2027, 1, 1))
    assert (first_2026, second_2026, first_2027) == ("260001A", "260002A", "270001A")


def test_rolled_back_transaction_gives_its_number_back(engine: Engine) -> None:
    try:
        with session_scope(engine) as session:
            assert allocate_receipt_no(session, date(2026, 5, 1)) == "260001A"
            raise RuntimeError("the application failed after numbering")
    except RuntimeError:
        pass
    with session_scope(engine) as session:
        assert allocate_receipt_no(session, date(2026, 5, 1)) == "260001A"


def test_after_9999_the_letter_advances(engine: Engine) -> None:
    from db.models import ReceiptCounter

    with session_scope(engine) as session:
        session.add(ReceiptCounter(year=2026, issued=9998))
    with session_scope(engine) as session:
        got = [allocate_receipt_no(session, date(2026, 6, 1)) for _ in range(3)]
    assert got == ["269999A", "260001B", "260002B"]
