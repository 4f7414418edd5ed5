"""kill -9 at the bad moments: nothing accepted is lost, nothing happens twice.

Eight client threads deliver N valid requests (one user ID each) to ``mailbot serve`` and keep
trying a message until it is answered 250, as MTAs do. Meanwhile the process is killed with
SIGKILL three times and restarted on the same home and port:

1. soon after sending begins: the gateway is committing, the worker processing, the outbox
   sending, all at once;
2. half-way, with a backlog of stored, unprocessed messages (the worker is mid-batch);
3. right after that restart, once the new worker has processed part of the backlog (mid-batch
   again), while the clients are still sending.

After the last restart the queue drains, and then, for every Message-ID that got a 250:
one inbound row, processed (done, accepted) once; one application naming its user ID; receipt
numbers ``YY0001A`` … without a gap or a repeat; and at the relay sink exactly one receipt
notice per application and recipient (applicant and manager).

A notice can reach the relay twice only in one window the outbox documents: sent, then killed
before ``sent`` was recorded. It then goes again with the same Message-ID, so at most one
repeat per kill is allowed, and the repeats are reported.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.acceptance.helpers import (
    RECEIPT_NOTICE,
    BulkSender,
    DbWatch,
    ServeFactory,
    ServeProcess,
    assert_each_request_handled_once,
    assert_one_notice_each,
    receipt_numbers,
    registry_with_requests,
    wait_until,
)
from tests.support.smtp import Sink

KILLS = 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "count"),
    [
        ("sqlite", 1000),
        # PostgreSQL processes ~8 requests/s on the 2-core test machine (docs/performance.md),
        # so fewer messages keep the suite within minutes; the kill points scale with it.
        pytest.param("postgres", 200, marks=pytest.mark.postgres),
    ],
)
def test_kill_9_while_receiving_and_processing(
    backend: str,
    count: int,
    request: pytest.FixtureRequest,
    serve_factory: ServeFactory,
    sink: Sink,
    tmp_path: Path,
) -> None:
    database_url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_schema_url"))
    )
    serve = serve_factory(database_url=database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    work = registry_with_requests(serve, count)
    user_id_of = work.user_id_of
    watch = DbWatch(database_url)

    serve.start()
    sender = BulkSender([serve.port], work.messages, threads=8, deadline_seconds=240).start()
    snapshots: list[dict[str, int]] = []

    # 1. Soon after sending begins, with all three parts of serve busy.
    wait_until(
        lambda: sender.report.accepted_count() >= count // 10,
        timeout=60,
        what="first tenth accepted",
    )
    snapshots.append(_kill_and_restart(serve, watch))

    # 2. Half-way, with a backlog of stored messages waiting for the worker.
    # The worker keeps up with the gateway most of the time (batched processing), so the
    # backlog at any instant is small: watch closely for a moment when there is one.
    backlog = 3
    snapshots.append(
        _kill_and_restart_when(
            serve,
            watch,
            lambda c: (
                sender.report.accepted_count() >= count // 2 and c["inbound_pending"] >= backlog
            ),
            timeout=120,
            what=f"half accepted with a backlog of {backlog}",
            interval=0.01,
        )
    )

    # 3. The restarted worker is mid-way through that backlog (and the clients still send).
    done_at_restart = watch.counts()["inbound_done"]
    snapshots.append(
        _kill_and_restart_when(
            serve,
            watch,
            lambda c: c["inbound_pending"] > 0 and c["inbound_done"] > done_at_restart,
            timeout=60,
            what="the restarted worker busy with the backlog",
            interval=0.02,
        )
    )
    last_kill = datetime.now(UTC)
    report = sender.join()
    print("state at each kill:", snapshots)
    print(f"attempts without an answer: {report.interrupted_attempts}")

    assert report.rejected == {}
    assert set(report.accepted) == set(user_id_of), "every message must end with a 250"
    # The kills must have hit work in flight, or this test proves nothing.
    assert all(s["inbound_pending"] > 0 for s in snapshots[1:]), snapshots
    assert any(s["outbox_pending"] > 0 for s in snapshots), snapshots
    assert report.interrupted_attempts > 0, "no client attempt was cut off by a kill"

    wait_until(
        lambda: watch.counts()["inbound_pending"] == 0,
        timeout=240,
        what="the intake queue drained after the last restart",
        interval=0.5,
    )
    released = watch.expire_outbox_leases(claimed_before=last_kill)
    print(f"outbox rows still leased by killed processes: {released}")
    wait_until(
        lambda: watch.counts()["outbox_sent"] == 2 * count,
        timeout=180,
        what="every notice sent",
        interval=0.5,
    )
    time.sleep(1)  # a repeat would arrive now, if the outbox were to send anything twice

    assert_each_request_handled_once(serve, report.accepted, user_id_of)
    _assert_each_notice_once(serve, sink, work.office.applicant, work.office.manager, count)
    assert serve.terminate() == 0


def _kill_and_restart(serve: ServeProcess, watch: DbWatch) -> dict[str, int]:
    state = watch.counts()
    serve.kill()
    serve.start()
    return state


def _kill_and_restart_when(
    serve: ServeProcess,
    watch: DbWatch,
    moment: Callable[[dict[str, int]], bool],
    *,
    timeout: float,
    what: str,
    interval: float,
) -> dict[str, int]:
    """Kill at once when the counts just read show ``moment``, and return those counts.

    Checking one reading and killing on another let the worker drain the backlog in between
    (seen on a loaded machine): the kill then hit no work in flight.
    """
    deadline = time.monotonic() + timeout
    while not moment(state := watch.counts()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    serve.kill()
    serve.start()
    return state


def _assert_each_notice_once(
    serve: ServeProcess, sink: Sink, applicant: str, manager: str, count: int
) -> None:
    outbox = serve.cli_json("outbox", "list")
    assert Counter((r["kind"], r["status"]) for r in outbox) == {
        ("receipt_complete", "sent"): 2 * count
    }
    # Only a notice in flight at a kill may go out again.
    tally = assert_one_notice_each(
        sink.deliveries,
        RECEIPT_NOTICE,
        receipt_numbers(count),
        (applicant, manager),
        repeats_allowed=KILLS,
    )
    print(f"notices at the sink: {tally.total}, repeats of a Message-ID: {tally.repeats}")
    assert {next(iter(ids)) for ids in tally.by_key.values()} == {r["message_id"] for r in outbox}
