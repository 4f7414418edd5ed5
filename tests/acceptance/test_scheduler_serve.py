"""Two ``mailbot serve`` instances on one PostgreSQL schema, as operators run them: exactly one
runs the scheduler; kill it with SIGKILL and the other takes over within a minute and applies
what is due, every application exactly once.

The leader lock poll is the production default (``MAILBOT_SCHEDULER_POLL_SECONDS`` = 15), so
the takeover time measured is the one a deployment gets. Only the apply time is moved, to a few
seconds after the kill (today in Tokyo), so that start dates come due while no scheduler runs.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bench.apply import APPLICANT, MANAGER, seed, user_ids_of
from db.migrate import upgrade
from tests.acceptance.helpers import (
    APPLIED_NOTICE,
    LEADS,
    STANDS_BY,
    DbWatch,
    ServeFactory,
    applied_events,
    assert_all_or_nothing,
    assert_one_notice_each,
    database,
    no_id_applied_twice,
    per_application,
    scheduler_lock_holders,
    tokyo_soon,
    wait_until,
)
from tests.support.smtp import Sink

MISSED = 10  # approved, start date yesterday: due before either instance starts
COMING = 10  # approved, due today at the apply time: a second after the leader is killed
IDS_EACH = 20
# From seeding to the run time: both instances start, the missed ones are applied and their
# notices sent, and then the leader is killed just before the run time.
LEAD_SECONDS = 25.0
TAKEOVER_BOUND_SECONDS = 60.0


@pytest.mark.postgres
def test_one_serve_runs_the_scheduler_and_another_takes_over_when_it_is_killed(
    serve_factory: ServeFactory, postgres_schema_url: str, sink: Sink
) -> None:
    start, apply_time = tokyo_soon(LEAD_SECONDS)
    due_at = time.monotonic() + LEAD_SECONDS
    settings = {"database_url": postgres_schema_url, "relay": f"smtp://127.0.0.1:{sink.port}"}
    first = serve_factory("first", apply_time=apply_time, **settings)
    second = serve_factory("second", apply_time=apply_time, **settings)
    watch = DbWatch(postgres_schema_url)
    sent = "SELECT count(*) FROM outbound_message WHERE kind = 'applied' AND status = 'sent'"

    with database(postgres_schema_url) as engine:
        upgrade(engine)
        missed = seed(engine, MISSED, IDS_EACH, start=start - timedelta(days=1))
        coming = seed(engine, COMING, IDS_EACH, start=start, first=MISSED)

        # One leader: the first to start runs the scheduler, the second stands by.
        first.start()
        wait_until(lambda: first.log_count(LEADS) == 1, timeout=30, what="the first leads")
        second.start()
        wait_until(lambda: second.log_count(STANDS_BY) == 1, timeout=30, what="second waits")
        assert second.log_count(LEADS) == 0
        assert scheduler_lock_holders(postgres_schema_url) == 1

        # The leader catches up on the missed start dates and sets the date jobs of the rest.
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (MISSED, COMING),
            timeout=30,
            what="the missed ones applied by the leader",
        )
        wait_until(lambda: watch.scalar(sent) == 2 * MISSED, timeout=30, what="their notices")
        jobs = first.cli_json("schedule", "jobs")
        assert sorted(p["receipt_no"] for p in jobs["pending"]) == coming
        assert time.monotonic() < due_at - 2, "set-up took longer than LEAD_SECONDS allows"

        # kill -9 the leader a second before the run time; nobody leads when it passes.
        wait_until(lambda: time.monotonic() >= due_at - 1, timeout=LEAD_SECONDS, what="run time")
        first.kill()
        killed = time.monotonic()
        wait_until(
            lambda: second.log_count(LEADS) == 1,
            timeout=TAKEOVER_BOUND_SECONDS,
            what="the second takes the scheduler over",
            interval=0.05,
        )
        takeover = time.monotonic() - killed
        print(f"takeover {takeover:.1f} s after the kill (run time {due_at - killed:+.1f} s)")
        assert takeover < TAKEOVER_BOUND_SECONDS
        assert scheduler_lock_holders(postgres_schema_url) == 1

        # The new leader applies what came due, and its outbox mails the notices.
        wait_until(
            lambda: assert_all_or_nothing(per_application(engine)) == (MISSED + COMING, 0),
            timeout=30,
            what="the coming ones applied by the new leader",
        )
        wait_until(
            lambda: watch.scalar(sent) == 2 * (MISSED + COMING),
            timeout=30,
            what="every applied notice sent",
        )
        time.sleep(1.5)  # room for a second apply or a second copy to show up

        # Every application applied exactly once: states, audit events, IDs, notices.
        assert assert_all_or_nothing(per_application(engine)) == (MISSED + COMING, 0)
        no_id_applied_twice(engine)
        via = [detail["via"] for detail in applied_events(engine)]
        print("applied via:", via)
        assert len(via) == MISSED + COMING
        assert via[:MISSED] == ["startup"] * MISSED  # the first leader's catch-up
        assert set(via[MISSED:]) <= {"startup", "sweep"} | {f"job:{r}" for r in coming}
    assert_one_notice_each(sink.deliveries, APPLIED_NOTICE, missed + coming, (APPLICANT, MANAGER))
    assert len(sink.deliveries) == 2 * (MISSED + COMING)
    assert second.cli_json("schedule", "jobs")["pending"] == []
    # From today on the IDs of an application due today can do nothing but statistics.
    abolished = user_ids_of(MISSED, IDS_EACH)[0]
    assert second.cli("ids", "can", abolished, "business", check=False).returncode == 1
    day_before = (start - timedelta(days=1)).isoformat()
    assert second.cli("ids", "can", abolished, "business", "--as-of", day_before).returncode == 0
    assert second.terminate() == 0
