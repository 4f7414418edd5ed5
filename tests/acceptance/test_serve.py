"""``mailbot serve`` as a user meets it: ``make run``'s steps in a fresh home, the demo request
over SMTP, the receipt notices in the Maildir, and a clean stop on SIGTERM (``kill``, systemd) or
SIGINT (Ctrl-C)."""

from __future__ import annotations

import mailbox
import signal
import smtplib
import time
from datetime import datetime
from email.utils import getaddresses

import pytest

from tests.acceptance.helpers import TOKYO, ServeFactory, maildir_notices, wait_until

STOP_SECONDS = 5.0


def test_make_run_steps_then_demo_request_gets_both_receipt_notices(
    serve_factory: ServeFactory,
) -> None:
    serve = serve_factory()
    assert not serve.home.joinpath("mailbot.db").exists()
    # make run: db upgrade, demo init, demo howto, then serve; in a home nobody used before.
    assert "revision" in serve.cli("db", "upgrade").stdout
    assert "demo data loaded" in serve.cli("demo", "init").stdout
    howto = serve.cli("demo", "howto").stdout
    assert f"127.0.0.1:{serve.port}" in howto
    assert "apply@mailbot.localhost" in howto
    assert "mailbot demo send" in howto
    # Running the steps again (make run twice) must not fail or load the data twice.
    assert "already has data" in serve.cli("demo", "init").stdout

    serve.start()
    sent = serve.cli("demo", "send")
    assert "demo request sent" in sent.stdout

    maildir = serve.home / "sent"
    wait_until(
        lambda: len([n for n in maildir_notices(maildir) if "受付完了" in n.subject]) >= 2,
        timeout=20,
        what="two receipt-complete notices in the Maildir",
    )
    # Read as a mail user agent would: mailbox.Maildir with its own message class.
    box = mailbox.Maildir(maildir, create=False)
    assert all(isinstance(message, mailbox.MaildirMessage) for message in box)

    year = datetime.now(TOKYO).year % 100
    expected_subject = f"【NSS】利用申込受付完了のお知らせ（{year:02d}0001A）"
    receipts = [n for n in maildir_notices(maildir) if "受付完了" in n.subject]
    assert [n.subject for n in receipts] == [expected_subject] * 2
    addressees = sorted(
        address.lower() for n in receipts for _, address in getaddresses([n.to_header])
    )
    # One copy each, each addressed to one person only (never one mail with both in To).
    assert addressees == ["sato@example.co.jp", "yamada@example.co.jp"]
    assert len({n.message_id for n in receipts}) == 2
    for notice in receipts:
        assert f"{year:02d}0001A" in notice.body
        assert "1ANACA0A" in notice.body
        assert notice.in_reply_to, "the notice must thread under the request"

    listed = serve.cli_json("list")
    assert [(a["receipt_no"], a["user_ids"]) for a in listed] == [
        (f"{year:02d}0001A", ["1ANACA0A"])
    ]

    # An idle client connected when the signal comes must not hold the process up.
    idle = smtplib.SMTP("127.0.0.1", serve.port, timeout=10)
    idle.ehlo()
    began = time.monotonic()
    code = serve.terminate(signal.SIGTERM, timeout=STOP_SECONDS)
    took = time.monotonic() - began
    idle.close()
    assert code == 0, serve.log_tail()
    assert took < STOP_SECONDS
    assert "mailbot stopped" in serve.log_text()
    assert "Traceback" not in serve.log_text()


def test_sigint_mid_session_exits_cleanly(serve_factory: ServeFactory) -> None:
    """Ctrl-C while a client is half-way through a transaction: exit 0, within seconds, and
    the client is told to come back later (421) or cut off, never told 250."""
    serve = serve_factory()
    serve.start()  # a home nobody used: serve creates the database itself
    client = smtplib.SMTP("127.0.0.1", serve.port, timeout=10)
    client.ehlo()
    client.mail("yamada@example.co.jp")
    client.rcpt("apply@mailbot.localhost")
    began = time.monotonic()
    code = serve.terminate(signal.SIGINT, timeout=STOP_SECONDS)
    took = time.monotonic() - began
    with pytest.raises((smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError)):
        client.data(b"Subject: too late\r\n\r\nbody\r\n")
    client.close()
    assert code == 0, serve.log_tail()
    assert took < STOP_SECONDS
    assert "mailbot stopped" in serve.log_text()
    assert "Traceback" not in serve.log_text()
