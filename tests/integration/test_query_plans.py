"""Queries that run all the time read an index, not a whole table (issue 16: cost stays flat as
the registry and the history grow; the timings are bench/scale.py's).

Each statement is recorded as it runs, then explained: on SQLite no ``SCAN table`` without an
index (``EXPLAIN QUERY PLAN``); on PostgreSQL, with sequential scans priced out, no
``Seq Scan`` (``EXPLAIN``), i.e. an index exists that can answer it. Tiny tables (a row per
year or per key) may be read whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Engine, event

from bench.apply import seed
from db.engine import session_scope
from db.models import UNDER_REVIEW
from mailbot.applications import application_summaries, list_applications
from mailbot.calendar import BusinessCalendar
from mailbot.console.queues import counts
from mailbot.facts import read_facts
from mailbot.inbound_claim import claim_pending_inbound

SMALL_TABLES = {"receipt_counter", "signing_key"}


@contextmanager
def recorded(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            statements.append((sql, params[0] if many else params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def full_scans(engine: Engine, run: Callable[[], object]) -> list[str]:
    """The tables that ``run``'s SELECTs would read whole, each with its statement."""
    with recorded(engine) as statements:
        run()
    assert statements, "nothing was recorded"
    found = []
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            cursor.execute("SET enable_seqscan = off")
        for sql, params in statements:
            if postgres:
                cursor.execute("EXPLAIN " + sql, params)
                lines = [row[0] for row in cursor.fetchall()]
                tables = [
                    m.group(1) for line in lines if (m := re.search(r"Seq Scan on (\w+)", line))
                ]
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + sql, params or ())
                details = [row[3] for row in cursor.fetchall()]
                tables = [
                    m.group(1) for detail in details if (m := re.match(r"SCAN (\w+)$", detail))
                ]
            found += [f"{table}: {sql}" for table in tables if table not in SMALL_TABLES]
    finally:
        connection.close()
    return found


def test_health_and_metrics_count_from_indexes(engine: Engine) -> None:
    """/healthz and /metrics (read_facts) on every scrape: abolished IDs, emptied messages,
    bytes by status, notices by status and kind."""
    assert full_scans(engine, lambda: read_facts(engine)) == []


def test_the_worker_claims_from_an_index(engine: Engine) -> None:
    def claim() -> None:
        with session_scope(engine) as session:
            claim_pending_inbound(session, 10)

    assert full_scans(engine, claim) == []


def test_listing_applications_reads_their_items_and_events_by_index(engine: Engine) -> None:
    """``mailbot list --status under_review`` (and ``status``)."""
    seed(engine, 3, 2, status=UNDER_REVIEW)

    def listing() -> None:
        with session_scope(engine) as session:
            application_summaries(session, list_applications(session, "under_review"))

    assert full_scans(engine, listing) == []


def test_the_console_counts_its_queues_from_indexes(engine: Engine) -> None:
    """The staff console's home page and queue headings: a COUNT per queue, the ones at risk,
    and the shared codes still waiting (read from the applications that gave one up)."""
    seed(engine, 3, 2, status=UNDER_REVIEW)

    def counting() -> None:
        with session_scope(engine) as session:
            counts(session, BusinessCalendar(), date(2026, 12, 7), 2)

    assert full_scans(engine, counting) == []
