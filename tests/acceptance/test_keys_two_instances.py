"""Two ``mailbot serve`` processes on one PostgreSQL schema without ``MAILBOT_SECRET_KEY``: they
share the signing keys in the database. A link mailed by one opens on the other, a staff reply
taken in by the other decides, and after ``mailbot keys rotate`` old links still open while new
notices are signed with the new key. And a short ``MAILBOT_SECRET_KEY`` stops ``serve`` and
``ingest``, naming the setting.

Everything goes through the processes' own doors: SMTP in, the relay sink out, HTTP for the
links, the command line; the database is read only for the key material (as an operator with
psql would), to show which key signed a link."""

from __future__ import annotations

import email.policy
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser

import psycopg
import pytest

from mailbot.keys import RELOAD_SECONDS, Key, Keyring
from mailbot.tokens import link_refusal
from tests.acceptance.helpers import (
    ServeFactory,
    ServeProcess,
    registry_with_requests,
    wait_until,
)
from tests.support.replies import reply_address, reply_to
from tests.support.smtp import Sink, send

REVIEWER = "reviewer@example.jp"
LINK = re.compile(r"https?://[^/\s]+(/a/(\d{6}[A-Z])\?t=(\S+))")


def arrived(sink: Sink, subject: str, to: str) -> list[EmailMessage]:
    parser = BytesParser(policy=email.policy.default)
    found = []
    for delivery in sink.deliveries:
        message = parser.parsebytes(delivery.content)
        assert isinstance(message, EmailMessage)
        if subject in str(message["Subject"]) and to in delivery.rcpt_tos:
            found.append(message)
    return found


def wait_for_mail(sink: Sink, subject: str, to: str, count: int = 1) -> EmailMessage:
    wait_until(
        lambda: len(arrived(sink, subject, to)) >= count,
        timeout=60,
        what=f"mail {subject!r} to {to}",
    )
    return arrived(sink, subject, to)[count - 1]


def link_of(message: EmailMessage) -> re.Match[str]:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = LINK.search(str(body.get_content()))
    assert found, "the notice carries the link to the application's page"
    return found


def open_page(process: ServeProcess, path: str) -> tuple[int, str]:
    """GET the path on ``process``'s own web port: (status, body)."""
    url = f"http://{process.env['MAILBOT_WEB_LISTEN']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def key_materials(url: str) -> dict[int, bytes]:
    with psycopg.connect(url) as pg:
        rows = pg.execute("SELECT id, material FROM signing_key").fetchall()
    return {int(key_id): str(material).encode() for key_id, material in rows}


def signed_only_by(materials: dict[int, bytes], link: re.Match[str]) -> list[int]:
    """Which keys, each alone, verify the link's token."""
    return [
        key_id
        for key_id, material in materials.items()
        if link_refusal(
            Keyring(Key(key_id, material)),
            link.group(3),
            receipt_no=link.group(2),
            now=datetime.now(UTC),
        )
        is None
    ]


@pytest.mark.postgres
def test_two_instances_share_the_keys_and_a_rotation(
    serve_factory: ServeFactory, postgres_schema_url: str, sink: Sink
) -> None:
    relay = f"smtp://127.0.0.1:{sink.port}"
    first = serve_factory("first", database_url=postgres_schema_url, relay=relay)
    second = serve_factory("second", database_url=postgres_schema_url, relay=relay)
    assert "MAILBOT_SECRET_KEY" not in first.env and "MAILBOT_SECRET_KEY" not in second.env
    work = registry_with_requests(first, 2, code="KEY01")  # runs `mailbot db upgrade`
    first.cli("staff", "add", REVIEWER, "--name", "審査 太郎")

    # A request taken in and processed by the first instance (the only one running) ...
    first.start()
    request = work.messages[0]
    send(first.port, request.raw, mail_from=request.sender, rcpt_to="apply@mailbot.localhost")
    receipt = wait_for_mail(sink, "受付完了", work.office.applicant)
    review = wait_for_mail(sink, "審査依頼", REVIEWER)
    old_link = link_of(receipt)
    receipt_no = old_link.group(2)
    # ... and the link in its notice opens on the second.
    second.start()
    status, page = open_page(second, old_link.group(1))
    assert status == 200 and receipt_no in page and "申込内容参照" in page

    # The reviewer's 承認 (its reply address signed by the first) is taken in and processed by
    # the second alone, and decides the application.
    assert first.terminate() == 0
    answer = reply_to(review, sender=REVIEWER, body="承認")
    send(second.port, answer, mail_from=REVIEWER, rcpt_to=reply_address(review))
    confirmation = wait_for_mail(sink, "確認完了", work.office.applicant)
    assert second.cli_json("status", receipt_no)["status"] == "approved"
    first.start()
    assert open_page(first, link_of(confirmation).group(1))[0] == 200

    # Rotation: old links still open on both instances ...
    rotated = first.cli("keys", "rotate").stdout
    assert "key 2 is now the current key" in rotated and "key 1 still verifies until" in rotated
    for process in (first, second):
        assert open_page(process, old_link.group(1))[0] == 200
    # ... and once the processes have read the keys again (they sign with the keyring they
    # read at most RELOAD_SECONDS ago), new notices carry links signed with the new key.
    time.sleep(RELOAD_SECONDS + 1)
    later = work.messages[1]
    send(second.port, later.raw, mail_from=later.sender, rcpt_to="apply@mailbot.localhost")
    new_receipt = wait_for_mail(sink, "受付完了", work.office.applicant, count=2)
    new_link = link_of(new_receipt)
    assert new_link.group(2) != receipt_no
    materials = key_materials(postgres_schema_url)
    assert signed_only_by(materials, new_link) == [2]  # the old key alone no longer verifies
    assert signed_only_by(materials, old_link) == [1]
    for process in (first, second):
        assert open_page(process, new_link.group(1))[0] == 200
    # The rotation is the operator's view too.
    listed = first.cli_json("keys", "list")
    assert [(k["id"], k["state"], k["verifies"]) for k in listed] == [
        (2, "current", True),
        (1, "retired", True),
    ]
    for material in materials.values():
        assert material.decode() not in first.log_text() + second.log_text()
    assert not (first.home / "secret_key").exists() and not (second.home / "secret_key").exists()

    assert first.terminate() == 0
    assert second.terminate() == 0


def test_a_short_secret_key_stops_serve_and_ingest_naming_it(
    serve_factory: ServeFactory,
) -> None:
    process = serve_factory("short-key", secret_key="only-20-characters!!")
    served = process.run("mailbot", "serve", check=False)
    assert served.returncode == 2
    assert "MAILBOT_SECRET_KEY" in served.stderr and "at least 32 characters" in served.stderr
    assert "only-20-characters!!" not in served.stderr + served.stdout

    # A mail server's pipe: the message must not be lost, so ingest defers it (75, the mail
    # server keeps it and retries) with the same message, and stores nothing.
    ingested = subprocess.run(
        [sys.executable, "-m", "mailbot", "ingest"],
        env=process.env,
        cwd=process.home,
        input=b"From: a@example.jp\r\nSubject: x\r\n\r\nhello\r\n",
        capture_output=True,
        timeout=60,
    )
    assert ingested.returncode == 75
    assert b"MAILBOT_SECRET_KEY" in ingested.stderr and b"at least 32" in ingested.stderr
    assert not (process.home / "mailbot.db").exists()
