"""Operating a real ``mailbot serve``: health that tells the truth about a real IMAP server,
/metrics read by Prometheus's own parser and checked against the database, and JSON logs read
line by line.

The IMAP server is a private Dovecot (tests/support/dovecot.py); the relay a real aiosmtpd
sink. Nothing here calls mailbot's code: HTTP, SMTP, IMAP, the command line, the log file and
read-only SQL, as an operator and a monitor see it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from db.models import INBOUND_STATUSES
from tests.acceptance.helpers import (
    DbWatch,
    ServeFactory,
    ServeProcess,
    registry_with_requests,
    wait_until,
)
from tests.support.dovecot import PASSWORD, Dovecot, running_dovecot
from tests.support.requests import INTAKE, OUTSIDER, form, mail
from tests.support.smtp import Sink, send


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with running_dovecot(tmp_path / "dovecot") as server:
        yield server


def web(process: ServeProcess, path: str) -> tuple[int, bytes]:
    port = int(process.env["MAILBOT_WEB_LISTEN"].rpartition(":")[2])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(process: ServeProcess) -> tuple[int, dict[str, Any]]:
    status, body = web(process, "/healthz")
    return status, json.loads(body)


def health_is(process: ServeProcess, status: int, imap_state: str) -> bool:
    code, body = health(process)
    return code == status and body.get("imap", {}).get("state") == imap_state


# --- health --------------------------------------------------------------------------------------


def test_health_follows_the_imap_server_down_refusing_and_back(
    serve_factory: ServeFactory, dovecot: Dovecot, database_url: str, sink: Sink
) -> None:
    serve = serve_factory(
        database_url=database_url,
        relay=f"smtp://127.0.0.1:{sink.port}",
        imap_url=dovecot.url(),
        imap_password=PASSWORD,
        imap_rescan_seconds="2",
        imap_refused_retry_seconds="2",
    )
    serve.start()

    wait_until(lambda: health_is(serve, 200, "connected"), timeout=30, what="IMAP connected")
    _, body = health(serve)
    assert body["status"] == "ok" and "failing" not in body
    for part in ("smtp", "worker", "outbox", "scheduler", "imap"):
        assert body[part]["ok"] is True, body
    assert body["scheduler"]["state"] == "leader"
    assert body["imap"]["last_success"]
    assert body["waiting"] == {
        "messages": 0,
        "oldest_seconds": None,
        "quarantined": 0,
        "notices": 0,
        "oldest_notice_seconds": None,
        "failed_notices": 0,
    }

    # The IMAP server goes away: 503, naming IMAP only.
    dovecot.stop()
    wait_until(lambda: health_is(serve, 503, "unreachable"), timeout=30, what="IMAP down seen")
    _, body = health(serve)
    assert body["failing"] == ["imap"] and body["smtp"]["ok"] and body["outbox"]["ok"]
    last_success = body["imap"]["last_success"]
    assert datetime.fromisoformat(last_success)  # when it last worked, for the operator

    # It comes back: 200 again, without a restart.
    dovecot.start()
    wait_until(lambda: health_is(serve, 200, "connected"), timeout=60, what="IMAP back")

    # The server refuses mailbot's login (the password was changed there): 503.
    dovecot.set_password("changed-on-the-server")
    dovecot.stop()  # every session ends; mailbot has to log in again
    dovecot.start()
    wait_until(lambda: health_is(serve, 503, "login refused"), timeout=60, what="refusal seen")
    assert "IMAP intake stopped" in serve.log_text()

    # The operator sets the password back on the server: mailbot logs in at its next try.
    dovecot.set_password(PASSWORD)
    wait_until(lambda: health_is(serve, 200, "connected"), timeout=60, what="login works again")
    assert serve.terminate() == 0


def test_a_mailbox_without_a_password_stops_start_up(serve_factory: ServeFactory) -> None:
    serve = serve_factory(imap_url="imaps://apply%40example.jp@imap.example.jp/INBOX")
    result = serve.cli("serve", check=False)
    assert result.returncode == 2
    assert "MAILBOT_IMAP_URL is set but no password" in result.stderr
    assert "MAILBOT_IMAP_PASSWORD" in result.stderr and "Traceback" not in result.stderr


def test_health_says_when_the_worker_is_not_draining(
    serve_factory: ServeFactory, database_url: str, sink: Sink
) -> None:
    """A gateway process stores a request; the worker is in another process that looks for
    work only once an hour (a poll set far too long): its health turns 503 once the request
    has waited longer than MAILBOT_HEALTH_STUCK_SECONDS. A web-only process shows the waiting
    message but holds it against nobody."""
    settings = {"database_url": database_url, "relay": f"smtp://127.0.0.1:{sink.port}"}
    gateway = serve_factory("gateway", **settings)
    worker = serve_factory(
        "worker", worker_poll_seconds="3600", health_stuck_seconds="1", **settings
    )
    viewer = serve_factory("viewer", **settings)
    gateway.spawn("mailbot", "serve", "--only", "smtp")
    wait_until(lambda: _smtp_ready(gateway), timeout=30, what="gateway up")
    worker.spawn("mailbot", "serve", "--only", "worker,web")
    viewer.spawn("mailbot", "serve", "--only", "web")
    wait_until(lambda: _answers(worker) and _answers(viewer), timeout=30, what="web up")
    assert health(worker)[0] == 200  # nothing waits yet

    request = mail(form("1ANACA0A", start="2026年12月15日"), sender=OUTSIDER)
    send(gateway.port, request, mail_from=OUTSIDER, rcpt_to=INTAKE)
    wait_until(lambda: health(worker)[0] == 503, timeout=30, what="the worker seen stuck")
    code, body = health(worker)
    assert body["failing"] == ["worker"]
    assert body["worker"]["error"].startswith("not draining: a message has waited")
    assert body["waiting"]["messages"] == 1 and body["waiting"]["oldest_seconds"] >= 1
    code, body = health(viewer)
    assert code == 200 and body["waiting"]["messages"] == 1 and "worker" not in body

    # Restarted, the worker takes the message at once: healthy again.
    assert worker.terminate() == 0
    worker.spawn("mailbot", "serve", "--only", "worker,web")
    wait_until(lambda: _answers(worker) and health(worker)[0] == 200, timeout=30, what="drained")
    assert health(worker)[1]["waiting"]["messages"] == 0
    for process in (gateway, worker, viewer):
        assert process.terminate() == 0


def _smtp_ready(process: ServeProcess) -> bool:
    from tests.acceptance.helpers import smtp_banner

    return smtp_banner(process.port)


def _answers(process: ServeProcess) -> bool:
    try:
        web(process, "/healthz")
    except OSError:
        return False
    return True


# --- metrics -------------------------------------------------------------------------------------


def scrape(process: ServeProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics parsed by prometheus_client's parser: sample name → labels → value."""
    code, body = web(process, "/metrics")
    assert code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_metrics_after_a_scripted_run_match_the_database(
    serve_factory: ServeFactory, database_url: str, sink: Sink
) -> None:
    serve = serve_factory(database_url=database_url, relay=f"smtp://127.0.0.1:{sink.port}")
    work = registry_with_requests(serve, 3, code="MET01")
    serve.start()
    watch = DbWatch(database_url)
    for outgoing in work.messages:
        send(serve.port, outgoing.raw, mail_from=outgoing.sender, rcpt_to=INTAKE)
    outsider = mail(form("1ANACA0A", start="2026年12月15日"), sender=OUTSIDER)
    send(serve.port, outsider, mail_from=OUTSIDER, rcpt_to=INTAKE)
    # Three requests: two receipt notices each and a review request per staff member (none
    # here); the outsider: one refusal.
    wait_until(
        lambda: watch.counts()["outbox_sent"] == 7 and watch.counts()["inbound_done"] == 4,
        timeout=60,
        what="everything processed and sent",
    )

    metrics = scrape(serve)

    def one(name: str, **labels: str) -> float:
        return metrics[name][tuple(sorted(labels.items()))]

    assert one("mailbot_database_up") == 1
    for status in INBOUND_STATUSES:
        expected = watch.scalar(f"SELECT count(*) FROM inbound_message WHERE status = '{status}'")
        assert one("mailbot_inbound_messages", status=status) == expected, status
    assert one("mailbot_inbound_messages", status="done") == 4
    assert one("mailbot_inbound_oldest_waiting_seconds") == 0
    with _rows(watch, "SELECT status, kind, count(*) FROM outbound_message GROUP BY 1, 2") as rows:
        expected_outbox = {(status, kind): count for status, kind, count in rows}
    assert {
        (dict(labels)["status"], dict(labels)["kind"]): value
        for labels, value in metrics["mailbot_outbox_messages"].items()
    } == expected_outbox
    assert sum(metrics["mailbot_outbox_messages"].values()) == 7
    with _rows(watch, "SELECT status, count(*) FROM application GROUP BY 1") as rows:
        expected_applications = dict(rows)
    for status, count in expected_applications.items():
        assert one("mailbot_applications", status=status) == count
    assert one("mailbot_applications", status="under_review") == 3
    with _rows(watch, "SELECT year, issued FROM receipt_counter") as rows:
        issued = {str(year): count for year, count in rows}
    assert {
        dict(labels)["year"]: value
        for labels, value in metrics["mailbot_receipt_numbers_issued"].items()
    } == issued
    assert sum(issued.values()) == 3
    # This process's own view: every part up, the scheduler led here, four DATAs answered 250.
    assert {
        dict(labels)["part"]: value for labels, value in metrics["mailbot_part_up"].items()
    } == {
        "smtp": 1,
        "worker": 1,
        "outbox": 1,
        "scheduler": 1,
        "web": 1,
    }
    assert one("mailbot_scheduler_leader") == 1
    assert one("mailbot_smtp_store_seconds_count", reply="250") == 4
    assert 0 < one("mailbot_smtp_store_seconds_sum", reply="250") < 30
    assert one("process_resident_memory_bytes") > 0
    assert serve.terminate() == 0


class _rows:
    """All rows of one read-only query (a context manager, for a short ``with``)."""

    def __init__(self, watch: DbWatch, sql: str) -> None:
        self.watch, self.sql = watch, sql

    def __enter__(self) -> list[tuple[Any, ...]]:
        with self.watch._connect() as conn:
            return [tuple(row) for row in conn.execute(self.sql).fetchall()]

    def __exit__(self, *exc: object) -> None:
        return None


# --- logs ----------------------------------------------------------------------------------------


def test_json_logs_one_object_per_line_with_the_ids(
    serve_factory: ServeFactory, sink: Sink
) -> None:
    serve = serve_factory(
        relay=f"smtp://127.0.0.1:{sink.port}", log_format="json", log_level="info"
    )
    work = registry_with_requests(serve, 1, code="LOG01")
    serve.start()
    request = work.messages[0]
    send(serve.port, request.raw, mail_from=request.sender, rcpt_to=INTAKE)
    watch = DbWatch(f"sqlite:///{serve.home / 'mailbot.db'}")
    wait_until(lambda: watch.counts()["outbox_sent"] == 2, timeout=30, what="notices sent")
    assert serve.terminate() == 0

    records = []
    for line in serve.log_text().splitlines():
        if line.startswith("=== "):  # the test's own marker between runs
            continue
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["time"].endswith("+09:00")  # MAILBOT_TIMEZONE, with its offset
        records.append(record)
    assert records, "nothing logged"
    received = [r for r in records if r["message"].startswith("application 260001A received")]
    assert len(received) == 1
    assert received[0]["receipt_no"] == "260001A"
    inbound_id = watch.scalar("SELECT id FROM inbound_message")
    assert received[0]["inbound_id"] == inbound_id
    sent = [r for r in records if "sent to" in r["message"] and "outbox_id" in r]
    with _rows(watch, "SELECT id FROM outbound_message ORDER BY id") as rows:
        assert sorted(r["outbox_id"] for r in sent) == [row[0] for row in rows]
    assert any(r["message"].startswith("mailbot running") for r in records)
    assert not any("Traceback" in r["message"] for r in records)
