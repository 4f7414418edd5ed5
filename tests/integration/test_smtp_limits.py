"""The gateway's limits over real SMTP: too many sessions get 421 at connect, too many messages
in DATA get 451 to DATA, and the sender's retry is then accepted (both databases).

Clients connect from different loopback addresses (127.0.0.1, 127.0.0.2, …) to be different
clients. A message is held "in DATA" by a client that has had its 354 and sent half of it.
"""

from __future__ import annotations

import smtplib
import threading
import time

import pytest
from sqlalchemy import Engine

from mailbot.gateway.smtp import SmtpGateway
from tests.integration.conftest import GATEWAY_DOMAIN, GatewayFactory
from tests.support.smtp import stored

DOMAIN = GATEWAY_DOMAIN
OURS = f"apply@{DOMAIN}"
SENDER = "sender@example.net"
FIRST, SECOND, THIRD = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def message(name: str) -> bytes:
    line = b"0123456789" * 7 + b"\r\n"
    return (
        f"From: {SENDER}\r\nTo: {OURS}\r\nSubject: {name}\r\n"
        f"Message-ID: <{name}@example.net>\r\n\r\n"
    ).encode() + line * 200


def connect(gateway: SmtpGateway, source: str = FIRST) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", gateway.port, timeout=30, source_address=(source, 0))


def send(gateway: SmtpGateway, raw: bytes, source: str = FIRST) -> None:
    with connect(gateway, source) as client:
        client.sendmail(SENDER, [OURS], raw)


class HeldData:
    """A client in the middle of DATA: it has had its 354 and sent half of the message."""

    def __init__(self, gateway: SmtpGateway, raw: bytes, source: str = FIRST) -> None:
        self.raw = raw
        self.client = connect(gateway, source)
        self.client.ehlo()
        assert self.client.mail(SENDER)[0] == 250
        assert self.client.rcpt(OURS)[0] == 250
        self.client.putcmd("data")
        code, _ = self.client.getreply()
        assert code == 354
        self.client.send(raw[: len(raw) // 2])

    def finish(self) -> tuple[int, bytes]:
        self.client.send(self.raw[len(self.raw) // 2 :] + b".\r\n")
        reply = self.client.getreply()
        self.client.quit()
        return reply


# --- sessions: 421 at connect ----------------------------------------------------------------


def test_a_connection_over_the_session_limit_gets_421_and_its_retry_is_accepted(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_sessions=2, smtp_max_sessions_per_client=2)
    first, second = connect(gateway, FIRST), connect(gateway, SECOND)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        connect(gateway, THIRD)
    assert refused.value.smtp_code == 421
    assert b"too many connections, try again later" in refused.value.smtp_error
    first.quit()
    time.sleep(0.2)  # the gateway sees the first connection go
    send(gateway, message("retried"), THIRD)  # what the refused client's MTA does next
    second.quit()
    assert stored(engine) == [message("retried")]


def test_one_client_cannot_take_every_session(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(smtp_max_sessions=10, smtp_max_sessions_per_client=2)
    held = [connect(gateway, FIRST), connect(gateway, FIRST)]
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        connect(gateway, FIRST)
    assert refused.value.smtp_code == 421
    other = connect(gateway, SECOND)  # another client still gets in
    assert other.noop()[0] == 250
    for client in [*held, other]:
        client.quit()


# --- messages in DATA: 451 ----------------------------------------------------------------------


def test_data_over_the_total_limit_gets_451_and_the_retry_is_accepted(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_data=1, smtp_max_data_per_client=1, smtp_data_wait_seconds=0)
    held = HeldData(gateway, message("first"), FIRST)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(gateway, message("second"), SECOND)
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error == b"4.3.2 too many messages being received, try again later"
    code, _ = held.finish()
    assert code == 250
    send(gateway, message("second"), SECOND)  # the MTA's retry
    assert stored(engine) == [message("first"), message("second")]


def test_data_over_the_per_client_limit_gets_451_while_others_get_in(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_data=4, smtp_max_data_per_client=1, smtp_data_wait_seconds=0)
    held = HeldData(gateway, message("held"), FIRST)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(gateway, message("same-client"), FIRST)
    assert refused.value.smtp_code == 451
    send(gateway, message("other-client"), SECOND)  # not held up by the first client
    assert held.finish()[0] == 250
    send(gateway, message("same-client"), FIRST)  # the retry
    assert stored(engine) == [message("other-client"), message("held"), message("same-client")]


def test_after_451_the_session_goes_on_with_the_next_transaction(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_data=1, smtp_max_data_per_client=1, smtp_data_wait_seconds=0)
    held = HeldData(gateway, message("held"), FIRST)
    with connect(gateway, SECOND) as client:
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail(SENDER, [OURS], message("later"))
        assert held.finish()[0] == 250
        assert client.sendmail(SENDER, [OURS], message("later")) == {}  # same connection
    assert stored(engine) == [message("held"), message("later")]


def test_data_waits_for_a_free_slot_within_the_wait(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_data=1, smtp_max_data_per_client=1, smtp_data_wait_seconds=20)
    held = HeldData(gateway, message("held"), FIRST)
    finished: list[tuple[int, bytes]] = []
    finisher = threading.Timer(1.0, lambda: finished.append(held.finish()))
    finisher.start()
    began = time.monotonic()
    send(gateway, message("waited"), SECOND)  # no 451: its DATA waited for the slot
    waited = time.monotonic() - began
    finisher.join()
    assert finished[0][0] == 250
    assert waited >= 0.9
    assert stored(engine) == [message("held"), message("waited")]


def test_a_trusted_relay_is_held_to_the_total_only(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(
        smtp_max_data=4,
        smtp_max_data_per_client=1,
        smtp_max_sessions_per_client=1,
        smtp_data_wait_seconds=0,
        trusted_relays=FIRST,
    )
    held = HeldData(gateway, message("relay-1"), FIRST)
    send(gateway, message("relay-2"), FIRST)  # a second session and DATA from the relay
    assert held.finish()[0] == 250
    assert stored(engine) == [message("relay-2"), message("relay-1")]


def test_a_client_that_disconnects_in_data_frees_its_slot(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(smtp_max_data=1, smtp_max_data_per_client=1, smtp_data_wait_seconds=5)
    held = HeldData(gateway, message("cut"), FIRST)
    held.client.close()  # the connection drops in the middle of the message
    send(gateway, message("next"), SECOND)
    assert stored(engine) == [message("next")]  # nothing of the cut message was stored


def test_a_client_trickling_its_data_loses_its_slot_when_the_session_timeout_runs_out(
    start_gateway: GatewayFactory, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session timeout runs from the DATA command and is not renewed by DATA's lines, so
    a client that sends a line now and then cannot keep its slot past it (300 s in service;
    3 s here)."""
    monkeypatch.setattr("mailbot.gateway.smtp.SESSION_TIMEOUT_SECONDS", 3.0)
    gateway = start_gateway(smtp_max_data=1, smtp_max_data_per_client=1, smtp_data_wait_seconds=8)
    held = HeldData(gateway, message("trickled"), FIRST)
    stop = threading.Event()
    cut: list[BaseException] = []

    def trickle() -> None:
        try:
            while not stop.wait(0.25):
                held.client.send(b"one more line\r\n")
        except OSError as exc:  # the gateway closed the connection
            cut.append(exc)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    began = time.monotonic()
    # The waiting session's own timeout runs from its DATA too: it asks two seconds later, so
    # it has two seconds for its message once the slot is free.
    time.sleep(2.0)
    try:
        send(gateway, message("waiting"), SECOND)  # waits for the slot, then gets it
    finally:
        stop.set()
        trickler.join(10)
    assert time.monotonic() - began < 8
    assert stored(engine) == [message("waiting")]
    if not cut:  # its last lines may still have gone into the socket's buffer
        assert held.client.sock is not None
        held.client.sock.settimeout(5)
        assert held.client.sock.recv(100) == b"", "the trickling client was never cut off"
