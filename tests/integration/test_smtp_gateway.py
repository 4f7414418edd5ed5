"""The SMTP gateway end to end: a real aiosmtpd server, a real smtplib client, both databases.

The server is ``SmtpGateway`` (what ``mailbot serve`` runs) inside an event loop on a
background thread, listening on 127.0.0.1 on a port the kernel picks.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from db.models import INBOUND_PENDING, InboundMessage
from mailbot.config import Settings, load_settings
from mailbot.gateway.smtp import TEMPFAIL, IntakeHandler, SmtpGateway, make_controller
from tests.support.loop import LoopThread
from tests.support.smtp import as_sent, free_port

T = TypeVar("T")

LIMIT = 64 * 1024
DOMAIN = "mailbot.test"
OURS = f"apply@{DOMAIN}"
SENDER = "applicant@example.co.jp"


@pytest.fixture
def smtp_settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        database_url=database_url,
        domain=DOMAIN,
        max_message_bytes=LIMIT,
    )


@pytest.fixture
def gateway(
    engine: Engine, smtp_settings: Settings, loop_thread: LoopThread
) -> Iterator[SmtpGateway]:
    gateway = SmtpGateway(engine, smtp_settings, port=0)
    loop_thread.run(gateway.start())
    yield gateway
    loop_thread.run(gateway.stop(grace=5))


def connect(gateway: SmtpGateway) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)


def message(subject: str = "test", body: bytes = b"hello\r\n") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {OURS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.co.jp>\r\n\r\n"
    ).encode() + body


def rows(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(InboundMessage)).one()


def send(
    gateway: SmtpGateway, raw: bytes, sender: str = SENDER, to: str = OURS
) -> tuple[int, bytes]:
    """One transaction, returning the reply to DATA (which sendmail() would swallow)."""
    with connect(gateway) as client:
        client.ehlo()
        assert client.mail(sender)[0] == 250
        assert client.rcpt(to)[0] == 250
        return client.data(raw)


# Acceptance ---------------------------------------------------------------------------------


def test_accepted_message_is_committed_before_the_client_hears_250(
    gateway: SmtpGateway, engine: Engine
) -> None:
    raw = message("committed")
    code, reply = send(gateway, raw)
    assert code == 250
    assert reply.startswith(b"2.0.0 Ok: stored as ")
    inbound_id = int(reply.rsplit(b" ", 1)[1])
    # Read through a fresh connection the moment 250 arrived: only committed rows are visible.
    with Session(engine) as session:
        row = session.get_one(InboundMessage, inbound_id)
    assert as_sent(row.raw) == raw
    assert row.envelope_from == SENDER
    assert row.envelope_to == [OURS]
    assert row.channel == "smtp"
    assert row.status == INBOUND_PENDING
    assert row.message_id == "<committed@example.co.jp>"


def test_ehlo_advertises_size_8bitmime_and_the_configured_name(gateway: SmtpGateway) -> None:
    with connect(gateway) as client:
        code, reply = client.ehlo()
        assert code == 250
        assert reply.startswith(DOMAIN.encode())
        assert client.esmtp_features["size"] == str(LIMIT)
        assert client.has_extn("8bitmime")
        assert client.has_extn("smtputf8")


def test_duplicate_delivery_is_answered_250_twice_and_stored_once(
    gateway: SmtpGateway, engine: Engine
) -> None:
    raw = message("twice")
    first = send(gateway, raw)
    second = send(gateway, raw)
    assert first == second  # same code, same "stored as <id>"
    assert first[0] == 250
    assert count(engine) == 1


def test_null_sender_is_accepted_and_stored_as_empty(gateway: SmtpGateway, engine: Engine) -> None:
    with connect(gateway) as client:
        assert client.sendmail("<>", [OURS], message("bounce")) == {}
    (row,) = rows(engine)
    assert row.envelope_from == ""


def test_tagged_reply_address_is_accepted(gateway: SmtpGateway, engine: Engine) -> None:
    tagged = f"Apply+r260001a@{DOMAIN.upper()}"
    with connect(gateway) as client:
        assert client.sendmail(SENDER, [tagged], message("tagged")) == {}
    (row,) = rows(engine)
    assert row.envelope_to == [tagged]


def test_on_stored_hook_runs_for_new_messages_only(
    engine: Engine, smtp_settings: Settings, loop_thread: LoopThread
) -> None:
    calls: list[int] = []
    gateway = SmtpGateway(engine, smtp_settings, port=0, on_stored=lambda: calls.append(1))
    loop_thread.run(gateway.start())
    try:
        send(gateway, message("hook"))
        send(gateway, message("hook"))  # a redelivery: nothing new for the worker
    finally:
        loop_thread.run(gateway.stop())
    assert calls == [1]


# Recipient policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "foreign", ["victim@example.com", f"postmaster@{DOMAIN}", "apply@other.example", "apply"]
)
def test_foreign_recipient_is_refused_and_nothing_is_stored(
    gateway: SmtpGateway, engine: Engine, foreign: str
) -> None:
    with connect(gateway) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail(SENDER, [foreign], message("relay"))
    code, reply = refused.value.recipients[foreign]
    assert code == 550
    assert reply == f"5.1.1 <{foreign}>: not a mailbot address".encode()
    assert count(engine) == 0


def test_mixed_recipients_store_only_ours(gateway: SmtpGateway, engine: Engine) -> None:
    with connect(gateway) as client:
        refused = client.sendmail(SENDER, ["victim@example.com", OURS], message("mixed"))
    assert list(refused) == ["victim@example.com"]
    assert refused["victim@example.com"][0] == 550
    (row,) = rows(engine)
    assert row.envelope_to == [OURS]


def test_repeated_recipient_is_recorded_once(gateway: SmtpGateway, engine: Engine) -> None:
    with connect(gateway) as client:
        assert client.sendmail(SENDER, [OURS, OURS], message("repeated")) == {}
    (row,) = rows(engine)
    assert row.envelope_to == [OURS]


def test_more_than_50_recipients_are_refused_with_452(gateway: SmtpGateway, engine: Engine) -> None:
    recipients = [f"apply+n{n}@{DOMAIN}" for n in range(51)]
    with connect(gateway) as client:
        refused = client.sendmail(SENDER, recipients, message("many"))
    assert list(refused) == [recipients[50]]
    assert refused[recipients[50]][0] == 452
    (row,) = rows(engine)
    assert row.envelope_to == recipients[:50]


# Size limit ---------------------------------------------------------------------------------


def test_announced_oversize_is_refused_at_mail_from(gateway: SmtpGateway, engine: Engine) -> None:
    raw = message("big", b"x" * LIMIT + b"\r\n")
    with connect(gateway) as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail(SENDER, [OURS], raw)  # smtplib announces SIZE= when advertised
    assert refused.value.smtp_code == 552
    assert count(engine) == 0


def test_unannounced_oversize_is_refused_after_data(gateway: SmtpGateway, engine: Engine) -> None:
    raw = message("big", b"y" * 998 + b"\r\n") * (LIMIT // 1000 + 1)
    code, _ = send(gateway, raw)
    assert code == 552
    assert count(engine) == 0


def test_message_at_the_limit_is_accepted(gateway: SmtpGateway, engine: Engine) -> None:
    # aiosmtpd counts the DATA lines as sent, CRLF included (no line here starts with a dot),
    # and keeps RFC 5321's 1000-octet line limit, so the body is made of full-length lines.
    head = message("edge", b"")
    line = b"z" * 998 + b"\r\n"
    lines, rest = divmod(LIMIT - len(head), len(line))
    raw = head + line * lines + b"w" * (rest - 2) + b"\r\n"
    assert len(raw) == LIMIT
    code, _ = send(gateway, raw)
    assert code == 250
    (row,) = rows(engine)
    assert as_sent(row.raw) == raw


@pytest.mark.parametrize("length", [1002, 5000, 100_000], ids=["just-over", "5k", "100k"])
def test_a_line_over_1000_octets_is_refused_after_data_and_nothing_is_stored(
    gateway: SmtpGateway, engine: Engine, length: int
) -> None:
    raw = message("long-line", b"x" * length + b"\r\nafter\r\n.\r\n..dots\r\n")
    with connect(gateway) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(OURS)
        code, reply = client.data(raw)
        assert (code, reply) == (500, b"Line too long (see RFC5321 4.5.3.1.6)")
        # The session goes on: the next message on the same connection is stored.
        assert client.sendmail(SENDER, [OURS], message("next")) == {}
    assert [as_sent(row.raw) for row in rows(engine)] == [message("next")]


# Bytes exactly ------------------------------------------------------------------------------


EIGHT_BIT_BODIES = {
    "iso-2022-jp": b"\x1b$B$3$s$K$A$O!#MxMQ<T#I#D$NGQ;_\x1b(B\r\n",
    "utf-8": "利用者IDの廃止をお願いします。①㈱ｶﾀｶﾅ\r\n".encode(),
    "shift_jis-cp932": "廃止申込 ﾃｽﾄ ①".encode("cp932") + b"\r\n",
    "all-high-bytes": bytes(range(0x80, 0x100)) + b"\r\n",
    "dots-and-bare-cr": b".leading dot\r\n..two dots\r\n.\tdot tab\r\nbare\rcr\r\n",
    "nul-and-controls": b"a\x00b\x01\x7f\r\n",
    "blank-lines-at-end": b"line one\r\nline two\r\n\r\n\r\n",
}


@pytest.mark.parametrize("body", EIGHT_BIT_BODIES.values(), ids=EIGHT_BIT_BODIES.keys())
def test_eight_bit_and_binary_bodies_are_stored_byte_exact(
    gateway: SmtpGateway, engine: Engine, body: bytes
) -> None:
    raw = (
        b"From: =?ISO-2022-JP?B?GyRCO1RMPhsoQg==?= <a@example.co.jp>\r\n"
        b"Subject: \x1b$B?=9~\x1b(B raw 8-bit header\r\n"
        b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
        b"Message-ID: <8bit@example.co.jp>\r\n\r\n" + body
    )
    with connect(gateway) as client:
        client.sendmail(SENDER, [OURS], raw, mail_options=["BODY=8BITMIME"])
    (row,) = rows(engine)
    assert as_sent(row.raw) == raw
    assert row.size == len(row.raw)


# Failure ------------------------------------------------------------------------------------


def test_store_failure_answers_451_and_a_retry_succeeds_once_fixed(
    gateway: SmtpGateway, engine: Engine
) -> None:
    raw = message("retry")
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_message RENAME TO inbound_message_away"))
    code, reply = send(gateway, raw)
    assert (code, reply.decode()) == (451, TEMPFAIL.removeprefix("451 "))
    assert b"Traceback" not in reply and b"Error" not in reply

    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_message_away RENAME TO inbound_message"))
    assert count(engine) == 0
    code, _ = send(gateway, raw)  # what the client's MTA does next
    assert code == 250
    (row,) = rows(engine)
    assert as_sent(row.raw) == raw


def test_unexpected_error_answers_451_without_details(smtp_settings: Settings) -> None:
    broken: Any = object()  # not an Engine: store_message fails with an AttributeError
    handler = IntakeHandler(broken, smtp_settings)
    envelope = Envelope()
    envelope.mail_from = SENDER
    envelope.rcpt_tos = [OURS]

    async def data() -> str:
        session = SMTPSession(asyncio.get_running_loop())
        return await handler.store(session, envelope, bytearray(message("boom")), 0)

    reply = asyncio.run(data())
    assert reply == TEMPFAIL
    assert handler.in_flight == 0


# Concurrency --------------------------------------------------------------------------------


def test_concurrent_sessions_store_every_message_exactly_once(
    gateway: SmtpGateway, engine: Engine
) -> None:
    threads, per_thread = 20, 5
    replies: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def client_thread(worker: int) -> None:
        try:
            start.wait()
            with connect(gateway) as client:  # several transactions on one connection
                for n in range(per_thread):
                    subject = f"w{worker}-m{n}"
                    assert client.sendmail(SENDER, [OURS], message(subject)) == {}
                    replies.append((subject, 250))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=client_thread, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    assert len(replies) == threads * per_thread
    stored = rows(engine)
    assert len(stored) == threads * per_thread
    assert {row.message_id for row in stored} == {
        f"<w{w}-m{n}@example.co.jp>" for w in range(threads) for n in range(per_thread)
    }


# Lifecycle ----------------------------------------------------------------------------------


def test_stop_closes_open_sessions_with_421_and_stops_listening(
    gateway: SmtpGateway, loop_thread: LoopThread
) -> None:
    port = gateway.port
    client = connect(gateway)
    client.ehlo()
    loop_thread.run(gateway.stop(grace=1), timeout=10)
    code, _ = client.getreply()  # the unsolicited 421 is waiting in the socket
    assert code == 421
    client.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_threaded_controller_stores_and_stops(
    engine: Engine, tmp_path: Path, database_url: str
) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        database_url=database_url,
        domain=DOMAIN,
        smtp_listen=f"127.0.0.1:{free_port()}",
        max_message_bytes=LIMIT,
    )
    controller = make_controller(engine, settings)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", settings.smtp_address.port, timeout=30) as client:
            client.ehlo()
            assert client.esmtp_features["size"] == str(LIMIT)
            assert client.sendmail("<>", [OURS], message("controller")) == {}
    finally:
        controller.stop()
    (row,) = rows(engine)
    assert (as_sent(row.raw), row.envelope_from) == (message("controller"), "")
