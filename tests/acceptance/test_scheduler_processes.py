"""The start date across whole processes: downtime, kill -9 mid-apply, and a leader dying.

The scheduler runs as ``python -m scheduler run`` (the same ``run_scheduler`` that ``mailbot
serve`` runs once it is wired in) and applies as ``python -m scheduler apply-due``; requests
come in through a real ``mailbot serve``, staff approve with ``mailbot approve``. The processes
use the real clock: start dates are set to today in Tokyo with an apply time a few seconds
ahead, never by sleeping until midnight.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bench.apply import seed
from db.engine import make_engine
from db.migrate import upgrade
from tests.acceptance.conftest import ServeFactory
from tests.acceptance.helpers import (
    TOKYO,
    DbWatch,
    ServeProcess,
    load_registry,
    make_office,
    request_for,
    start_date,
    wait_until,
)
from tests.support.requests import INTAKE

STAFF = "staff@mailbot.localhost"
POLL = "0.5"  # the leader lock poll: takeover in about this long, not the default 15 s


# --- driving the scheduler processes -----------------------------------------------------------


def start_scheduler(
    process: ServeProcess, *options: str, env: dict[str, str] | None = None
) -> None:
    """``python -m scheduler run`` with ``process``'s settings, home and log; the fixture kills it
    at the end like a serve process (it is one, as far as the fixture knows)."""
    assert not process.running
    process.runs += 1
    with process.log_path.open("ab") as log:
        log.write(f"=== {process.name}: scheduler run {process.runs} ===\n".encode())
        log.flush()
        process.process = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "run", "--poll-seconds", POLL, *options],
            env={**process.env, **(env or {})},
            cwd=process.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def scheduler_cli(process: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=process.env,
        cwd=process.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_count(process: ServeProcess, needle: str) -> int:
    return process.log_text().count(needle)


LEADS = "runs the scheduler\n"
# Time for two CLI runs (the approval and the jobs listing) before the run time passes.
LEAD_SECONDS = 8.0
STANDS_BY = "standing by"


def tokyo_soon(seconds: float) -> tuple[date, str]:
    """(start date, apply time HH:MM:SS): the run time ``seconds`` from now, in Tokyo."""
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).astimezone(TOKYO)
    return at.date(), at.strftime("%H:%M:%S")


@contextmanager
def database(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def per_application(engine: Engine) -> dict[str, dict[str, Any]]:
    """For each application: status, IDs abolished / total, open items, applied events, notices."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.receipt_no, a.status, "
                "SUM(CASE WHEN u.status = 'abolished' THEN 1 ELSE 0 END), COUNT(*), "
                "SUM(CASE WHEN i.open THEN 1 ELSE 0 END) "
                "FROM application a "
                "JOIN application_item i ON i.application_id = a.id AND i.kind = 'user_id' "
                "JOIN user_id u ON u.user_id = i.key "
                "GROUP BY a.receipt_no, a.status"
            )
        ).all()
        events = dict(
            conn.execute(
                text(
                    "SELECT a.receipt_no, COUNT(e.id) FROM application a LEFT JOIN audit_event e "
                    "ON e.application_id = a.id AND e.event = 'applied' GROUP BY a.receipt_no"
                )
            ).all()
        )
        notices = dict(
            conn.execute(
                text(
                    "SELECT a.receipt_no, COUNT(o.id) FROM application a LEFT JOIN "
                    "outbound_message o ON o.application_id = a.id AND o.kind = 'applied' "
                    "GROUP BY a.receipt_no"
                )
            ).all()
        )
    return {
        receipt_no: {
            "status": status,
            "abolished": int(abolished),
            "ids": int(ids),
            "open": int(open_items),
            "events": int(events[receipt_no]),
            "notices": int(notices[receipt_no]),
        }
        for receipt_no, status, abolished, ids, open_items in rows
    }


def assert_all_or_nothing(state: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Every application wholly applied (once) or wholly not; (applied, not applied)."""
    applied = untouched = 0
    for receipt_no, row in state.items():
        if row["status"] == "applied":
            assert (row["abolished"], row["open"], row["events"], row["notices"]) == (
                row["ids"],
                0,
                1,
                2,
            ), receipt_no
            applied += 1
        else:
            assert row["status"] == "approved", receipt_no
            assert (row["abolished"], row["open"], row["events"], row["notices"]) == (
                0,
                row["ids"],
                0,
                0,
            ), receipt_no
            untouched += 1
    return applied, untouched


def no_id_applied_twice(engine: Engine) -> None:
    with engine.connect() as conn:
        details = conn.execute(
            text("SELECT detail FROM audit_event WHERE event = 'applied'")
        ).scalars()
        seen: list[str] = []
        for detail in details:
            seen += (json.loads(detail) if isinstance(detail, str) else detail)["user_ids"]
    assert len(seen) == len(set(seen))


# --- a start date passes while mailbot is down -------------------------------------------------


def test_a_start_date_passing_while_down_is_applied_at_the_next_start_once(
    serve_factory: ServeFactory,
) -> None:
    serve = serve_factory("serve")
    office = make_office(2, code="DWN01")
    desired = start_date()
    load_registry(serve, [office], desired)
    serve.cli("staff", "add", STAFF, "--name", "審査 太郎")
    serve.start()
    outgoing = request_for(office, office.user_ids[0], desired)
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as client:
        client.sendmail(outgoing.sender, [INTAKE], outgoing.raw)
    watch = DbWatch(f"sqlite:///{serve.home / 'mailbot.db'}")
    wait_until(lambda: watch.counts()["applications"] == 1, timeout=30, what="the application")
    serve.terminate()
    receipt_no = str(watch.scalar("SELECT receipt_no FROM application"))

    # Approved for today in Tokyo, due a few seconds later, while nothing runs.
    start, apply_time = tokyo_soon(LEAD_SECONDS)
    due_at = time.monotonic() + LEAD_SECONDS
    serve.cli("approve", receipt_no, "--by", STAFF, "--start-date", start.isoformat())
    pending = json.loads(scheduler_cli(serve, "jobs", "--json", "--apply-time", apply_time).stdout)
    assert [(p["receipt_no"], p["due"]) for p in pending["pending"]] == [(receipt_no, False)]
    time.sleep(max(0.0, due_at - time.monotonic()) + 0.5)

    # The host's zone is New York; the start date is Tokyo's.
    start_scheduler(serve, "--apply-time", apply_time, env={"TZ": "America/New_York"})
    with database(watch.url) as engine:
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (1, 0),
            timeout=30,
            what="applied by the catch-up at start",
        )
        serve.kill()  # and once more, from cold
        start_scheduler(serve, "--apply-time", apply_time)
        wait_until(lambda: log_count(serve, LEADS) == 2, timeout=30, what="leading again")
        time.sleep(1.0)  # its catch-up and first sweep: room for a second apply to show up
        assert assert_all_or_nothing(per_application(engine)) == (1, 0)
        with engine.connect() as conn:
            (detail,) = conn.execute(
                text("SELECT detail FROM audit_event WHERE event = 'applied'")
            ).scalars()
    serve.terminate()
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert (detail["via"], detail["user_ids"]) == ("startup", [outgoing.user_id])

    # `mailbot ids can` from the start date on.
    assert serve.cli("ids", "can", outgoing.user_id, "business", check=False).returncode == 1
    day_before = (start - timedelta(days=1)).isoformat()
    assert (
        serve.cli("ids", "can", outgoing.user_id, "business", "--as-of", day_before).returncode == 0
    )


# --- kill -9 in the middle of applying ---------------------------------------------------------

APPLICATIONS = 60  # three batches of 20 and more: the kill lands after the first
IDS_EACH = 100


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_kill_9_mid_apply_leaves_each_application_all_or_nothing(
    serve_factory: ServeFactory, backend: str, request: pytest.FixtureRequest
) -> None:
    url = None if backend == "sqlite" else str(request.getfixturevalue("postgres_schema_url"))
    process = serve_factory("apply", database_url=url)
    url = url or f"sqlite:///{process.home / 'mailbot.db'}"
    yesterday = datetime.now(TOKYO).date() - timedelta(days=1)
    with database(url) as engine:
        upgrade(engine)
        seed(engine, APPLICATIONS, IDS_EACH, start=yesterday)
        watch = DbWatch(url)
        applied_count = "SELECT count(*) FROM application WHERE status = 'applied'"

        runner = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "apply-due"],
            env=process.env,
            cwd=process.home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(
                lambda: (watch.scalar(applied_count) or 0) > 0,
                timeout=60,
                what="the first batch committed",
                interval=0.02,
            )
            runner.send_signal(signal.SIGKILL)  # somewhere inside a later batch
        finally:
            runner.kill()
            runner.wait(10)
        applied, untouched = assert_all_or_nothing(per_application(engine))
        assert applied > 0 and untouched > 0, "the kill came too late to interrupt anything"

        # The next run completes it: everything applied once, no ID twice.
        finish = scheduler_cli(process, "apply-due", "--json")
        assert finish.returncode == 0, finish.stderr
        assert len(json.loads(finish.stdout)["applied"]) == untouched
        assert assert_all_or_nothing(per_application(engine)) == (APPLICATIONS, 0)
        no_id_applied_twice(engine)


# --- two instances on PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
def test_one_leader_and_a_takeover_when_it_dies(
    serve_factory: ServeFactory, postgres_schema_url: str
) -> None:
    first = serve_factory("first", database_url=postgres_schema_url)
    second = serve_factory("second", database_url=postgres_schema_url)
    start, apply_time = tokyo_soon(15)  # after the kill below
    with database(postgres_schema_url) as engine:
        upgrade(engine)
        seed(engine, 10, 20, start=start - timedelta(days=1))  # missed while nobody ran
        seed(engine, 10, 20, start=start, first=10)  # comes due after the takeover
        options = ("--apply-time", apply_time, "--sweep-seconds", "1")

        start_scheduler(first, *options)
        wait_until(lambda: log_count(first, LEADS) == 1, timeout=30, what="the first leads")
        start_scheduler(second, *options)
        wait_until(lambda: log_count(second, STANDS_BY) == 1, timeout=30, what="second waits")
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (10, 10),
            timeout=30,
            what="the missed ones applied by the leader",
        )
        with engine.connect() as conn:
            jobs = conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar_one()
        assert jobs == 10  # the leader's sweep set the date jobs of the other ten

        first.kill()
        killed = time.monotonic()
        wait_until(lambda: log_count(second, LEADS) == 1, timeout=60, what="the takeover")
        assert time.monotonic() - killed < 10
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (20, 0),
            timeout=30,
            what="the rest applied by the new leader",
        )
        time.sleep(1.5)  # a sweep or two more: nothing may happen twice
        assert assert_all_or_nothing(per_application(engine)) == (20, 0)
        no_id_applied_twice(engine)
        with engine.connect() as conn:
            via = conn.execute(
                text("SELECT detail FROM audit_event WHERE event = 'applied'")
            ).scalars()
            sources = {(json.loads(d) if isinstance(d, str) else d)["via"] for d in via}
        assert "startup" in sources and sources <= {"startup", "sweep"} | {
            f"job:{r}" for r in _receipts(engine)
        }
    assert second.terminate() == 0


def _receipts(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT receipt_no FROM application")).scalars())
