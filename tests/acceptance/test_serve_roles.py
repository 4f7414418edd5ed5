"""``mailbot serve --only``: the parts of mailbot in separate processes on one database.

One process runs only the SMTP gateway, another the worker, the outbox, the scheduler and the
web server. Nothing wakes the worker across processes: it must find the gateway's messages by
its poll, and the outbox the worker's notices by its own.
"""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.request
from pathlib import Path

from tests.acceptance.helpers import (
    LEADS,
    RECEIPT_NOTICE,
    DbWatch,
    ServeFactory,
    ServeProcess,
    assert_one_notice_each,
    receipt_numbers,
    registry_with_requests,
    smtp_banner,
    wait_until,
)
from tests.support.requests import INTAKE
from tests.support.smtp import Sink


def web_port(process: ServeProcess) -> int:
    return int(process.env["MAILBOT_WEB_LISTEN"].rpartition(":")[2])


def healthz(process: ServeProcess) -> int | None:
    """The status of ``/healthz`` on the process's web address; None when nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port(process)}/healthz", timeout=2):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_roles(process: ServeProcess, roles: str) -> None:
    """``serve --only ROLES``; returns once its gateway greets, or else its web server answers."""
    process.spawn("mailbot", "serve", "--only", roles)

    def ready() -> bool:
        if not process.running:
            return True  # exited: reported below
        return smtp_banner(process.port) if "smtp" in roles else healthz(process) is not None

    wait_until(ready, timeout=30, what=f"{process.name} ready")
    assert process.running, process.log_tail()


def send(port: int, sender: str, raw: bytes) -> tuple[int, bytes]:
    """One SMTP transaction; the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mta.example.co.jp")
        assert client.mail(sender)[0] == 250
        assert client.rcpt(INTAKE)[0] == 250
        return client.data(raw)


def test_a_gateway_process_and_a_processing_process_share_the_work(
    serve_factory: ServeFactory, database_url: str, sink: Sink
) -> None:
    relay = f"smtp://127.0.0.1:{sink.port}"
    settings = {"database_url": database_url, "relay": relay}
    gateway = serve_factory("gateway", **settings)
    # The worker polls at its default, one second: no shorter setting hides a lost wake-up.
    rest = serve_factory("rest", worker_poll_seconds="1", **settings)
    work = registry_with_requests(gateway, 2, code="ROLE01")
    first, second = work.messages
    watch = DbWatch(database_url)

    # The gateway alone: mail is stored and answered, and waits for a worker.
    start_roles(gateway, "smtp")
    assert not listening(web_port(gateway)), "the smtp-only process serves no web pages"
    code, reply = send(gateway.port, first.sender, first.raw)
    assert (code, reply[:19]) == (250, b"2.0.0 Ok: stored as")
    wait_until(lambda: watch.counts()["inbound"] == 1, timeout=10, what="the request stored")
    pending = watch.counts()
    assert (pending["inbound_pending"], pending["applications"]) == (1, 0)
    assert "roles smtp;" in gateway.log_text()

    # The rest of mailbot in another process: it finds the stored request by its poll.
    start_roles(rest, "worker,outbox,scheduler,web")
    assert healthz(rest) == 200
    assert not smtp_banner(rest.port), "the processing process runs no SMTP gateway"
    wait_until(
        lambda: watch.counts()["outbox_sent"] == 2,
        timeout=30,
        what="the first request processed and its two receipt notices sent",
    )

    # Both running: a request sent now goes from one process to the other, with no wake-up.
    assert send(gateway.port, second.sender, second.raw)[0] == 250
    wait_until(
        lambda: watch.counts()["outbox_sent"] == 4,
        timeout=30,
        what="the second request processed and its two receipt notices sent",
    )

    office = work.office
    assert_one_notice_each(
        sink.deliveries, RECEIPT_NOTICE, receipt_numbers(2), (office.applicant, office.manager)
    )
    assert len(sink.deliveries) == 4
    inbound = json.loads(gateway.cli("inbound", "list", "--json").stdout)
    assert sorted(row["status"] for row in inbound) == ["done", "done"]
    assert LEADS in rest.log_text(), "the only process with the scheduler runs it"
    assert gateway.log_count("as inbound") == 2
    assert "SMTP gateway listening" not in rest.log_text()
    assert "status pages on" not in gateway.log_text()
    assert gateway.terminate() == 0
    assert rest.terminate() == 0


def test_the_outbox_finds_notices_of_a_worker_in_another_process(
    serve_factory: ServeFactory, tmp_path: Path, sink: Sink
) -> None:
    """Each hop between processes by polling alone: gateway → worker → outbox."""
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'shared.db'}",
        "relay": f"smtp://127.0.0.1:{sink.port}",
        "worker_poll_seconds": "1",
    }
    gateway = serve_factory("gateway", **settings)
    worker = serve_factory("worker", **settings)
    outbox = serve_factory("outbox", **settings)
    work = registry_with_requests(gateway, 1, code="ROLE02")
    start_roles(gateway, "smtp")
    worker.spawn("mailbot", "serve", "--only", "worker")
    start_roles(outbox, "outbox,web")
    request = work.messages[0]
    assert send(gateway.port, request.sender, request.raw)[0] == 250
    watch = DbWatch(settings["database_url"])
    wait_until(lambda: watch.counts()["outbox_sent"] == 2, timeout=30, what="notices sent")
    office = work.office
    assert_one_notice_each(
        sink.deliveries, RECEIPT_NOTICE, receipt_numbers(1), (office.applicant, office.manager)
    )
    assert "processed 1 message" in worker.log_text()
    assert "outbox: message" not in worker.log_text(), "the worker process sends nothing"
    for process in (gateway, worker, outbox):
        assert process.terminate() == 0


def test_an_unknown_role_is_refused_with_the_list_of_roles(serve_factory: ServeFactory) -> None:
    process = serve_factory("bad-role")
    result = process.cli("serve", "--only", "smtp,mailer", check=False)
    assert result.returncode == 2
    assert "'mailer'" in result.stderr
    assert "smtp, worker, outbox, scheduler, web, imap" in result.stderr
    assert "Traceback" not in result.stderr
    assert not listening(process.port)
