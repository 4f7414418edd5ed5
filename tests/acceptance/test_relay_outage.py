"""The relay goes away while requests arrive: notices wait (pending, retrying, visible to the
operator), nothing is lost or given up on, and when the relay is back every notice arrives
exactly once.

Two kinds of outage in a row, as relays fail in practice: nothing listening (connection
refused), then a relay that answers every message ``451`` (busy, try later).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.acceptance.helpers import (
    RECEIPT_NOTICE,
    BulkSender,
    DbWatch,
    ServeFactory,
    assert_one_notice_each,
    receipt_numbers,
    registry_with_requests,
    wait_until,
)
from tests.support.smtp import Sink, free_port

REQUESTS = 10
BUSY = "451 4.3.0 relay busy, try again later"


def test_notices_wait_out_a_relay_outage_and_arrive_once(serve_factory: ServeFactory) -> None:
    relay = Sink(port=free_port())  # not started: the relay is down
    serve = serve_factory(
        relay=f"smtp://127.0.0.1:{relay.port}",
        outbox_backoff_seconds="0.2",  # 0.2, 0.4, 0.8 … s: several retries within seconds
        outbox_max_attempts="12",  # the outage must not exhaust them
    )
    database_url = f"sqlite:///{serve.home / 'mailbot.db'}"
    watch = DbWatch(database_url)
    work = registry_with_requests(serve, REQUESTS, code="OUT01")
    serve.start()
    try:
        sender = BulkSender([serve.port], work.messages, threads=2, deadline_seconds=60)
        report = sender.start().join()
        assert len(report.accepted) == REQUESTS

        # Down: every notice queued, tried more than once, none given up on.
        wait_until(
            lambda: _min_attempts(watch, 2 * REQUESTS) >= 2,
            timeout=60,
            what="every notice tried at least twice while the relay is down",
        )
        rows: list[dict[str, Any]] = serve.cli_json("outbox", "list")
        assert len(rows) == 2 * REQUESTS
        assert Counter(r["status"] for r in rows) == {"pending": 2 * REQUESTS}
        assert all(r["attempts"] >= 2 for r in rows), rows
        assert all(str(relay.port) in (r["last_error"] or "") for r in rows), rows
        assert all(r["sent_at"] is None and r["next_attempt_at"] for r in rows)

        # Up, but answering 451 to every message: still retrying, still nothing accepted.
        relay.handler.reply = BUSY
        relay.start()
        wait_until(
            lambda: (
                watch.scalar("SELECT count(*) FROM outbound_message WHERE last_error LIKE '%451%'")
                == 2 * REQUESTS
            ),
            timeout=60,
            what="every notice tried again and turned away by the busy relay",
        )
        assert relay.deliveries == []
        busy_rows = serve.cli_json("outbox", "list", "--status", "pending")
        assert len(busy_rows) == 2 * REQUESTS
        assert all("451" in (r["last_error"] or "") for r in busy_rows), busy_rows

        # Back: everything goes out.
        relay.handler.reply = None
        wait_until(
            lambda: watch.counts()["outbox_sent"] == 2 * REQUESTS,
            timeout=60,
            what="every notice sent once the relay is back",
        )
        time.sleep(1.5)  # room for a second copy to show up, if one were coming

        # No crash here: every notice must arrive exactly once.
        recipients = (work.office.applicant, work.office.manager)
        receipts = receipt_numbers(REQUESTS)
        assert_one_notice_each(relay.deliveries, RECEIPT_NOTICE, receipts, recipients)
        assert len(relay.deliveries) == 2 * REQUESTS
        sent = serve.cli_json("outbox", "list")
        assert Counter(r["status"] for r in sent) == {"sent": 2 * REQUESTS}
        assert all(r["last_error"] is None for r in sent)
        assert serve.terminate() == 0
    finally:
        relay.stop()


def _min_attempts(watch: DbWatch, expected_rows: int) -> int:
    """The fewest delivery attempts of any notice; 0 until all ``expected_rows`` exist."""
    if watch.counts()["outbox_pending"] + watch.counts()["outbox_sent"] < expected_rows:
        return 0
    return int(watch.scalar("SELECT min(attempts) FROM outbound_message") or 0)
