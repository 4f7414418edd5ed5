"""The start date across whole processes: downtime, kill -9 mid-apply, and a leader dying.

The scheduler runs as a process of its own, ``mailbot serve --only scheduler``
(test_scheduler_serve.py shows the takeover between processes with every role) and applies as
``mailbot apply-due``; requests come in through a real ``mailbot serve``, staff approve with
``mailbot approve``. The processes
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
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from bench.apply import seed
from db.migrate import upgrade
from tests.acceptance.helpers import (
    LEADS,
    STANDS_BY,
    TOKYO,
    DbWatch,
    ServeFactory,
    ServeProcess,
    applied_events,
    assert_all_or_nothing,
    database,
    load_registry,
    make_office,
    no_id_applied_twice,
    per_application,
    request_for,
    start_date,
    tokyo_soon,
    wait_until,
)
from tests.support.requests import INTAKE

STAFF = "staff@mailbot.localhost"
POLL = "0.5"  # the leader lock poll: takeover in about this long, not the default 15 s
# Time for two CLI runs (the approval and the jobs listing) before the run time passes.
LEAD_SECONDS = 8.0


# --- driving the scheduler processes -----------------------------------------------------------


def start_scheduler(
    process: ServeProcess, apply_time: str, *, sweep_seconds: str | None = None, **env: str
) -> None:
    """``mailbot serve --only scheduler`` with ``process``'s settings, home and log, the given
    apply time and the short leader poll; the fixture kills it at the end like a serve process."""
    settings = {"MAILBOT_APPLY_TIME": apply_time, "MAILBOT_SCHEDULER_POLL_SECONDS": POLL}
    if sweep_seconds is not None:
        settings["MAILBOT_SWEEP_SECONDS"] = sweep_seconds
    process.spawn("mailbot", "serve", "--only", "scheduler", env={**settings, **env})


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
    jobs = serve.cli("schedule", "jobs", "--json", env={"MAILBOT_APPLY_TIME": apply_time})
    pending = json.loads(jobs.stdout)
    assert [(p["receipt_no"], p["due"]) for p in pending["pending"]] == [(receipt_no, False)]
    time.sleep(max(0.0, due_at - time.monotonic()) + 0.5)

    # The host's zone is New York; the start date is Tokyo's.
    start_scheduler(serve, apply_time, TZ="America/New_York")
    with database(watch.url) as engine:
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (1, 0),
            timeout=30,
            what="applied by the catch-up at start",
        )
        serve.kill()  # and once more, from cold
        start_scheduler(serve, apply_time)
        wait_until(lambda: serve.log_count(LEADS) == 2, timeout=30, what="leading again")
        time.sleep(1.0)  # its catch-up and first sweep: room for a second apply to show up
        assert assert_all_or_nothing(per_application(engine)) == (1, 0)
        (detail,) = applied_events(engine)
    serve.terminate()
    assert (detail["via"], detail["user_ids"]) == ("startup", [outgoing.user_id])

    # `mailbot ids can` from the start date on.
    assert serve.cli("ids", "can", outgoing.user_id, "business", check=False).returncode == 1
    day_before = (start - timedelta(days=1)).isoformat()
    assert (
        serve.cli("ids", "can", outgoing.user_id, "business", "--as-of", day_before).returncode == 0
    )


# --- kill -9 in the middle of applying ---------------------------------------------------------

APPLICATIONS = 60  # three batches and more: the kill lands after the first
BATCH = 20
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
            [sys.executable, "-m", "mailbot", "apply-due", "--batch", str(BATCH)],
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
        finish = process.cli("apply-due", "--json", check=False)
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
        start_scheduler(first, apply_time, sweep_seconds="1")
        wait_until(lambda: first.log_count(LEADS) == 1, timeout=30, what="the first leads")
        start_scheduler(second, apply_time, sweep_seconds="1")
        wait_until(lambda: second.log_count(STANDS_BY) == 1, timeout=30, what="second waits")
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
        wait_until(lambda: second.log_count(LEADS) == 1, timeout=60, what="the takeover")
        assert time.monotonic() - killed < 10
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (20, 0),
            timeout=30,
            what="the rest applied by the new leader",
        )
        time.sleep(1.5)  # a sweep or two more: nothing may happen twice
        assert assert_all_or_nothing(per_application(engine)) == (20, 0)
        no_id_applied_twice(engine)
        sources = {detail["via"] for detail in applied_events(engine)}
        assert "startup" in sources and sources <= {"startup", "sweep"} | {
            f"job:{r}" for r in _receipts(engine)
        }
    assert second.terminate() == 0


def _receipts(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT receipt_no FROM application")).scalars())
