"""Two ``mailbot serve`` processes on one PostgreSQL database, as a deployment scales out:
requests arrive at both gateways, both workers claim from one queue, both outboxes deliver,
and every request is still handled exactly once."""

from __future__ import annotations

import re
import time

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

REQUESTS = 100
SENT_LINE = re.compile(r"outbox: message (\d+) <")
STORED_LINE = re.compile(r"stored \d+ bytes as inbound (\d+)")


@pytest.mark.postgres
def test_two_instances_share_one_queue_and_do_everything_once(
    serve_factory: ServeFactory, postgres_schema_url: str, sink: Sink
) -> None:
    relay = f"smtp://127.0.0.1:{sink.port}"
    first = serve_factory("first", database_url=postgres_schema_url, relay=relay)
    second = serve_factory("second", database_url=postgres_schema_url, relay=relay)
    work = registry_with_requests(first, REQUESTS, code="TWO01")
    first.start()
    second.start()

    # Even-numbered client threads talk to the first instance, odd ones to the second.
    report = (
        BulkSender([first.port, second.port], work.messages, threads=8, deadline_seconds=120)
        .start()
        .join()
    )
    assert report.rejected == {}
    assert len(report.accepted) == REQUESTS

    watch = DbWatch(postgres_schema_url)
    wait_until(
        lambda: watch.counts()["outbox_sent"] == 2 * REQUESTS,
        timeout=120,
        what="every request processed and every notice sent",
        interval=0.5,
    )
    time.sleep(1.5)  # room for a second processing or a second copy to show up

    assert_each_request_handled_once(first, report.accepted, work.user_id_of)

    office = work.office
    recipients = (office.applicant, office.manager)
    assert_one_notice_each(sink.deliveries, RECEIPT_NOTICE, receipt_numbers(REQUESTS), recipients)
    assert len(sink.deliveries) == 2 * REQUESTS

    # Who did what, from the processes' own logs.
    stored = {p.name: _ids(p, STORED_LINE) for p in (first, second)}
    sent = {p.name: _ids(p, SENT_LINE) for p in (first, second)}
    print(
        "stored by gateway:",
        {k: len(v) for k, v in stored.items()},
        "sent by outbox:",
        {k: len(v) for k, v in sent.items()},
    )
    assert all(stored.values()), "each gateway must have taken some of the requests"
    assert not (sent["first"] & sent["second"]), "a notice was sent by both outboxes"
    assert len(sent["first"] | sent["second"]) == 2 * REQUESTS

    assert first.terminate() == 0
    assert second.terminate() == 0


def _ids(process: ServeProcess, line: re.Pattern[str]) -> set[int]:
    return {int(found.group(1)) for found in line.finditer(process.log_text())}
