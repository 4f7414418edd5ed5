"""Hostile senders over real SMTP (issue 13, items 4, 5 and 6).

* Nothing is dropped silently: a message the parser cannot read is quarantined with its error
  and raw bytes, shown by ``mailbot inbound list --status quarantined``; a known sender is told
  (Japanese first, then English), an outsider is not.
* mailbot never answers its own addresses (the intake address, any ``+tag``, any case) nor the
  null sender, whoever asks it to.
* No backscatter: an outsider (not a registered contact, not staff) gets at most one short text
  reply a day per mailbox (``+tag`` removed, case folded), never the form; all outsiders
  together at most MAILBOT_OUTSIDER_REPLIES_PER_HOUR an hour. Sizes are measured on the raw bytes
  queued in the outbox.
"""

from __future__ import annotations

import io
import json
import logging
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from email.message import EmailMessage

import pytest

from db.engine import session_scope
from db.models import OutboundMessage
from mailbot.cli import main
from mailbot.mime import parse_mail
from mailbot.notices import REFUSAL
from mailbot.notify import Reply, send_reply
from mailbot.reply_limits import OUTSIDER_REPLY_MAX_BYTES
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.requests import INTAKE, OUTSIDER, YAMADA, mail

HELP_FROM_OUTSIDER = (
    f"From: {OUTSIDER}\r\nTo: {INTAKE}\r\nSubject: help\r\n"
    "Message-ID: <help-1@example.net>\r\n\r\nPlease send the form.\r\n"
).encode()


def nested(depth: int, sender: str) -> bytes:
    """A message whose multiparts nest ``depth`` levels: Python's parser gives up near 1,000."""
    head = f"From: {sender}\r\nTo: {INTAKE}\r\nSubject: =?UTF-8?B?55Sz6L68?=\r\n"
    head += "Message-ID: <nested@example.co.jp>\r\nMIME-Version: 1.0\r\n"
    parts = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    return head.encode() + parts + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def queued(h: Harness) -> list[OutboundMessage]:
    return h.outbound()


def inbound_list(h: Harness, monkeypatch: pytest.MonkeyPatch, *args: str) -> object:
    """``mailbot inbound list … --json`` against the harness's database, as an operator runs it."""
    home = h.settings.home
    monkeypatch.setenv("MAILBOT_HOME", str(home))
    monkeypatch.setenv("MAILBOT_DATABASE_URL", h.settings.database_url)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(["inbound", "list", *args, "--json"])
    assert exited.value.code == 0, err.getvalue()
    return json.loads(out.getvalue())


# --- item 4: nothing dropped silently ---------------------------------------------------------


def test_a_message_nested_1000_deep_from_a_contact_is_quarantined_and_the_contact_told(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = nested(1000, YAMADA)
    harness.send(raw)
    started = time.perf_counter()
    harness.process()
    elapsed = time.perf_counter() - started
    harness.deliver()
    (message,) = harness.inbound()
    assert message.status == "quarantined"  # never done, never ignored
    assert "nested too deeply" in (message.error or "")
    assert bytes(message.raw).endswith(raw)  # the raw bytes are kept for the operator
    listed = inbound_list(harness, monkeypatch, "--status", "quarantined")
    assert isinstance(listed, list) and [row["id"] for row in listed] == [message.id]
    assert "nested too deeply" in listed[0]["error"]
    (reply,) = harness.new_mail()
    assert reply["To"].addresses[0].addr_spec == YAMADA
    assert str(reply["In-Reply-To"]) == "<nested@example.co.jp>"
    assert not list(reply.iter_attachments())
    text = body_text(reply)
    japanese, _, english = text.partition("[English]")
    assert "読み取ることができなかった" in japanese and "保管" in japanese
    assert "could not read your message" in english
    (row,) = queued(harness)
    assert (row.kind, row.recipient) == ("unreadable", YAMADA)
    assert row.raw is not None and len(row.raw) < OUTSIDER_REPLY_MAX_BYTES
    assert elapsed < 10  # a second or less on the test machine; a hang would show here


def test_a_message_nested_1000_deep_from_an_outsider_is_quarantined_without_a_reply(
    harness: Harness,
) -> None:
    harness.round_trip(nested(1000, OUTSIDER), mail_from=OUTSIDER)
    (message,) = harness.inbound()
    assert message.status == "quarantined" and "nested too deeply" in (message.error or "")
    assert queued(harness) == []


def test_an_unreadable_message_from_a_contact_sent_as_a_report_gets_no_answer(
    harness: Harness,
) -> None:
    # Quarantined like any other, but a robot (here: the null envelope sender) is never told.
    harness.round_trip(nested(1000, YAMADA), mail_from="")
    assert harness.inbound()[0].status == "quarantined"
    assert queued(harness) == []


def test_reprocessing_an_unreadable_message_does_not_tell_the_sender_twice(
    harness: Harness,
) -> None:
    from mailbot.worker import requeue

    harness.round_trip(nested(1000, YAMADA))
    (message,) = harness.inbound()
    with session_scope(harness.engine) as session:
        requeue(session, message.id or 0)
    harness.process()
    harness.deliver()
    assert harness.inbound()[0].status == "quarantined"
    assert [row.kind for row in queued(harness)] == ["unreadable"]


# --- item 5: never our own addresses, never the null sender -------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "apply@mailbot.localhost",
        "apply+bounce@mailbot.localhost",
        "APPLY+t12345@MAILBOT.LOCALHOST",
        "Apply+Bounce@Mailbot.Localhost",
    ],
)
def test_mail_from_our_own_address_is_never_answered(harness: Harness, sender: str) -> None:
    for raw in (mail("利用者ID廃止申込", sender=sender), mail("", subject="help", sender=sender)):
        harness.round_trip(raw, mail_from=sender)
    assert queued(harness) == []
    assert {m.kind for m in harness.inbound()} == {"ignored"}


def test_a_from_that_is_one_encoded_word_hiding_our_address_is_not_answered(
    harness: Harness,
) -> None:
    # "申込 <Apply+Bounce@Mailbot.Localhost>" encoded whole, address included: no address.
    raw = (
        b"From: =?utf-8?b?55Sz6L68IDxBcHBseStCb3VuY2VATWFpbGJvdC5Mb2NhbGhvc3Q+?=\r\n"
        b"To: apply@mailbot.localhost\r\nSubject: x\r\n\r\nbody\r\n"
    )
    harness.round_trip(raw, mail_from=OUTSIDER)
    assert queued(harness) == []
    assert harness.inbound()[0].status == "done"


def test_the_null_sender_is_never_answered(harness: Harness) -> None:
    for raw in (mail("x", sender=OUTSIDER), HELP_FROM_OUTSIDER, mail("x", sender=YAMADA)):
        harness.round_trip(raw, mail_from="")  # MAIL FROM:<>
    assert queued(harness) == []


@pytest.mark.parametrize(
    "to",
    [
        "apply@mailbot.localhost",
        "APPLY+t12345@MAILBOT.LOCALHOST",
        "apply+bounce@mailbot.localhost",
        "",
        "=?utf-8?b?55sz6l68idxbchbsestcb3vuy2vatwfpbgjvdc5mb2nhbghvc3q+?=",
    ],
)
def test_the_reply_gate_refuses_our_own_addresses_whoever_calls_it(
    harness: Harness, to: str
) -> None:
    # Whatever a caller (a future template, a staff reply) asks for, send_reply refuses.
    harness.send(mail("x", sender=YAMADA))
    assert not gate_answers(harness, to)
    assert queued(harness) == []


def test_the_reply_gate_refuses_a_message_whose_envelope_sender_was_null(harness: Harness) -> None:
    harness.send(mail("x", sender=YAMADA), mail_from="")
    assert not gate_answers(harness, YAMADA)
    assert queued(harness) == []


def gate_answers(harness: Harness, to: str) -> bool:
    """Whether send_reply queues a reply to ``to`` answering the one stored message."""
    (message,) = harness.inbound()
    with session_scope(harness.engine) as session:
        reply = Reply(inbound_id=message.id or 0, mail=parse_mail(bytes(message.raw)), to=to)
        return send_reply(
            session, harness.settings, reply, REFUSAL, {"organisation": "x"}, now=harness.now
        )


# --- item 6: no backscatter ------------------------------------------------------------------------


def test_an_outsiders_help_gets_a_short_text_without_the_form(harness: Harness) -> None:
    (reply,) = harness.round_trip(HELP_FROM_OUTSIDER, mail_from=OUTSIDER)
    (row,) = queued(harness)
    assert row.raw is not None
    assert len(row.raw) <= OUTSIDER_REPLY_MAX_BYTES
    assert len(row.raw) / len(HELP_FROM_OUTSIDER) < 20  # was 13 KB for 200 bytes: 60×
    assert reply.get_content_type() == "text/plain" and not list(reply.iter_attachments())
    text = body_text(reply)
    assert "■廃止する利用者ID" not in text  # no form
    assert "ヘルプ" in text and "help" in text  # how a registered contact gets it
    assert text.index("[English]") > text.index("登録されている")  # Japanese first


def test_a_registered_contacts_help_still_gets_the_form(harness: Harness) -> None:
    (reply,) = harness.round_trip(mail("", subject="help"))
    assert [part.get_filename() for part in reply.iter_attachments()]
    assert "■廃止する利用者ID：" in body_text(reply)


def test_an_outsider_gets_one_reply_a_day_whatever_tag_or_case(harness: Harness) -> None:
    variants = [
        OUTSIDER,
        "Mallory+1@Example.NET",
        "MALLORY+bounce@example.net",
        "mallory@EXAMPLE.net",
    ]
    for n, sender in enumerate(variants):
        harness.send(mail(f"申込 {n}", sender=sender), mail_from=sender)
        harness.send(
            HELP_FROM_OUTSIDER.replace(OUTSIDER.encode(), sender.encode()), mail_from=sender
        )
    harness.process()
    harness.deliver()
    assert len(harness.new_mail()) == 1  # 8 messages from one mailbox: one reply
    harness.now += timedelta(days=1)
    harness.round_trip(mail("申込", sender=variants[1]), mail_from=variants[1])
    assert len(queued(harness)) == 2  # the next day, one more


def test_each_outsider_reply_is_short_text(harness: Harness) -> None:
    senders = [f"forged{n}@example.net" for n in range(3)]
    harness.round_trip(mail("申込", sender=senders[0]), mail_from=senders[0])
    harness.round_trip(HELP_FROM_OUTSIDER.replace(OUTSIDER.encode(), senders[1].encode()))
    harness.round_trip(mail("", subject="ヘルプ", sender=senders[2]), mail_from=senders[2])
    rows = queued(harness)
    assert sorted(row.kind for row in rows) == ["help", "help", "refusal"]
    for row in rows:
        assert row.raw is not None and len(row.raw) <= OUTSIDER_REPLY_MAX_BYTES
        assert b"multipart" not in row.raw.split(b"\r\n\r\n", 1)[0]


def test_replies_to_outsiders_are_capped_per_hour(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harness = harness_factory(outsider_replies_per_hour=3)
    for n in range(6):
        sender = f"forged{n}@example.net"
        harness.send(mail("申込", sender=sender), mail_from=sender)
    with caplog.at_level(logging.INFO, logger="mailbot.reply_limits"):
        harness.process()
    assert len(queued(harness)) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "replies to outsiders this hour" in warnings[0].getMessage()
    # Registered contacts and staff are not held back by it.
    harness.round_trip(mail("x", subject="help"))
    assert queued(harness)[-1].recipient == YAMADA
    harness.now += timedelta(hours=1)  # a new hour
    harness.round_trip(mail("申込", sender="late@example.net"), mail_from="late@example.net")
    assert queued(harness)[-1].recipient == "late@example.net"


def test_a_staff_member_keeps_the_full_allowance(harness: Harness) -> None:
    for _ in range(3):
        harness.send(mail("", subject="help", sender=STAFF), mail_from=STAFF)
    harness.process()
    rows = queued(harness)
    assert len(rows) == 3 and all(row.recipient == STAFF for row in rows)


def test_a_contacts_form_replies_are_not_outsider_sized(harness: Harness) -> None:
    # Registered contacts keep the form attached to problem replies (today's behaviour).
    out: list[EmailMessage] = harness.round_trip(mail("■事業所コード：TYO01\r\n"))
    (reply,) = out
    assert list(reply.iter_attachments())
    (row,) = queued(harness)
    assert row.raw is not None and len(row.raw) > OUTSIDER_REPLY_MAX_BYTES
