"""The outbox on SQLite and PostgreSQL: enqueueing once, delivering to a real Maildir and a real
SMTP sink (aiosmtpd), retries with backoff, permanent failures, bounces, and concurrent senders.
"""

from __future__ import annotations

import asyncio
import email
import mailbox
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from db.engine import make_engine, session_scope
from db.models import (
    OUTBOUND_BOUNCED,
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_SENT,
    OutboundMessage,
)
from mailbot.compose import ComposedMail, compose
from mailbot.config import RelayTarget, Settings
from mailbot.errors import NotFoundError
from mailbot.outbox import (
    MaildirTransport,
    OutboxError,
    PermanentDeliveryError,
    SmtpTransport,
    TransientDeliveryError,
    bounce_address,
    deliver_due,
    enqueue,
    list_outbox,
    make_transport,
    mark_bounced,
    next_attempt,
    retry_outbox,
    run_outbox,
    take_autoreply_allowance,
)

T0 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
RECIPIENT = "yamada@example.co.jp"


# Helpers ----------------------------------------------------------------------------------


def composed(settings: Settings, n: int = 0, to: str = RECIPIENT) -> ComposedMail:
    return compose(
        settings,
        to=to,
        to_name="山田 太郎",
        subject=f"受付完了 {n}",
        body="㈱ ① 髙\n",
        kind="receipt_complete",
        in_reply_to="<request@example.co.jp>",
        now=T0,
    )


def queue(engine: Engine, settings: Settings, count: int = 1, *, now: datetime = T0) -> list[int]:
    ids = []
    with session_scope(engine) as session:
        for n in range(count):
            row = enqueue(
                session,
                composed(settings, n),
                kind="receipt_complete",
                dedupe_key=f"app:{n}:receipt_complete:{RECIPIENT}",
                recipient=RECIPIENT,
                now=now,
            )
            assert row is not None and row.id is not None
            ids.append(row.id)
    return ids


def row(engine: Engine, row_id: int) -> OutboundMessage:
    with session_scope(engine) as session:
        found = session.get(OutboundMessage, row_id)
        assert found is not None
        return found


def deliver(engine: Engine, transport: Any, now: datetime, **options: Any) -> int:
    options.setdefault("max_attempts", 5)
    options.setdefault("backoff_seconds", 30.0)
    return asyncio.run(deliver_due(engine, transport, now=now, **options))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Sink:
    """An aiosmtpd handler that keeps every envelope, or refuses with a fixed reply."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def message_ids(self) -> list[str]:
        return [
            str(email.message_from_bytes(content, policy=policy.default)["Message-ID"])
            for _, _, content in self.envelopes
        ]


@contextmanager
def running(sink: Sink, port: int) -> Iterator[Sink]:
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def smtp(settings: Settings, port: int) -> SmtpTransport:
    target = RelayTarget(kind="smtp", host="127.0.0.1", port=port)
    return SmtpTransport(target, envelope_sender=bounce_address(settings), timeout=5)


class Scripted:
    """A transport that fails as told, then succeeds; records what it was asked to send."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[str] = []

    async def send(self, mail: OutboundMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(mail.message_id)


# Enqueueing -------------------------------------------------------------------------------


def test_enqueue_twice_with_the_same_key_gives_one_row(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        first = enqueue(
            session, composed(settings), kind="k", dedupe_key="inbound:7:help", recipient=RECIPIENT
        )
        assert first is not None and first.status == OUTBOUND_PENDING
    with session_scope(engine) as session:
        # A reprocessed message renders again (a new Message-ID) but must not queue again.
        again = enqueue(
            session, composed(settings), kind="k", dedupe_key="inbound:7:help", recipient=RECIPIENT
        )
        assert again is None
    with session_scope(engine) as session:
        assert len(list_outbox(session)) == 1


def test_enqueue_is_part_of_the_callers_transaction(engine: Engine, settings: Settings) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        enqueue(session, composed(settings), kind="k", dedupe_key="x", recipient=RECIPIENT)
        raise RuntimeError("the application failed")
    with session_scope(engine) as session:
        assert list_outbox(session) == []


# Maildir and SMTP delivery ----------------------------------------------------------------


def test_maildir_delivery_reads_back(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    [row_id] = queue(engine, settings)
    folder = tmp_path / "sent"
    assert deliver(engine, MaildirTransport(folder), T0) == 1
    messages = list(mailbox.Maildir(folder, create=False))
    assert len(messages) == 1
    stored = row(engine, row_id)
    assert messages[0]["Message-ID"] == stored.message_id
    [key] = mailbox.Maildir(folder, create=False).keys()
    assert mailbox.Maildir(folder, create=False).get_bytes(key) == stored.raw
    assert (stored.status, stored.sent_at, stored.attempts) == (OUTBOUND_SENT, T0, 1)
    assert deliver(engine, MaildirTransport(folder), T0 + timedelta(hours=1)) == 0


def test_make_transport_follows_the_relay_setting(settings: Settings) -> None:
    transport = make_transport(settings)
    assert isinstance(transport, MaildirTransport)
    assert transport.path == settings.home / "sent"
    relayed = make_transport(settings.model_copy(update={"relay": "smtp://relay.example.jp:587"}))
    assert isinstance(relayed, SmtpTransport)
    assert relayed.envelope_sender == f"apply+bounce@{settings.domain}"


def test_smtp_delivery_to_a_real_sink(engine: Engine, settings: Settings) -> None:
    [row_id] = queue(engine, settings)
    port = free_port()
    with running(Sink(), port) as sink:
        assert deliver(engine, smtp(settings, port), T0) == 1
    [(mail_from, rcpt_tos, content)] = sink.envelopes
    assert mail_from == f"apply+bounce@{settings.domain}"
    assert rcpt_tos == [RECIPIENT]
    assert content == row(engine, row_id).raw
    assert row(engine, row_id).status == OUTBOUND_SENT


def test_relay_down_backs_off_then_delivers_exactly_once(
    engine: Engine, settings: Settings
) -> None:
    [row_id] = queue(engine, settings)
    port = free_port()  # nothing listens here yet
    transport = smtp(settings, port)
    assert deliver(engine, transport, T0) == 0
    waiting = row(engine, row_id)
    assert (waiting.status, waiting.attempts) == (OUTBOUND_PENDING, 1)
    assert waiting.next_attempt_at == T0 + timedelta(seconds=30)
    assert waiting.last_error and "127.0.0.1" in waiting.last_error
    with running(Sink(), port) as sink:
        assert deliver(engine, transport, T0 + timedelta(seconds=29)) == 0  # not due yet
        assert sink.envelopes == []
        assert deliver(engine, transport, T0 + timedelta(seconds=30)) == 1
        assert deliver(engine, transport, T0 + timedelta(days=1)) == 0
    assert len(sink.envelopes) == 1
    done = row(engine, row_id)
    assert (done.status, done.attempts, done.last_error) == (OUTBOUND_SENT, 2, None)


def test_sink_stopped_mid_way_is_transient(engine: Engine, settings: Settings) -> None:
    first, second = queue(engine, settings, 2)
    port = free_port()
    with running(Sink(), port):
        assert deliver(engine, smtp(settings, port), T0, batch=1) == 1
    assert deliver(engine, smtp(settings, port), T0) == 0
    assert row(engine, second).status == OUTBOUND_PENDING
    with running(Sink(), port) as sink:
        assert deliver(engine, smtp(settings, port), T0 + timedelta(minutes=1)) == 1
    assert sink.message_ids() == [row(engine, second).message_id]
    assert row(engine, first).status == OUTBOUND_SENT


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_550_fails_at_once_and_shows_in_the_list(
    engine: Engine, settings: Settings, stage: str
) -> None:
    [row_id] = queue(engine, settings)
    reply = "550 5.1.1 no such user"
    sink = Sink(rcpt_reply=reply) if stage == "rcpt" else Sink(data_reply=reply)
    port = free_port()
    with running(sink, port):
        assert deliver(engine, smtp(settings, port), T0) == 0
    with session_scope(engine) as session:
        [failed] = list_outbox(session, OUTBOUND_FAILED)
        assert list_outbox(session, OUTBOUND_PENDING) == []
    assert failed["id"] == row_id
    assert failed["attempts"] == 1
    assert "550" in failed["last_error"]


def test_451_is_retried(engine: Engine, settings: Settings) -> None:
    [row_id] = queue(engine, settings)
    port = free_port()
    with running(Sink(data_reply="451 4.3.0 try again later"), port):
        assert deliver(engine, smtp(settings, port), T0) == 0
    waiting = row(engine, row_id)
    assert waiting.status == OUTBOUND_PENDING
    assert waiting.last_error and "451" in waiting.last_error


def test_max_attempts_then_failed_then_retry(engine: Engine, settings: Settings) -> None:
    [row_id] = queue(engine, settings)
    transport = Scripted(*(TransientDeliveryError("relay busy") for _ in range(3)))
    now = T0
    for attempt in range(1, 4):
        assert deliver(engine, transport, now, max_attempts=3) == 0
        now = next_attempt(now, attempt, 30.0)
    failed = row(engine, row_id)
    assert (failed.status, failed.attempts, failed.last_error) == (OUTBOUND_FAILED, 3, "relay busy")
    assert deliver(engine, transport, now + timedelta(days=1), max_attempts=3) == 0
    with session_scope(engine) as session:
        retry_outbox(session, row_id, now=now)
    again = row(engine, row_id)
    assert (again.status, again.attempts, again.next_attempt_at) == (OUTBOUND_PENDING, 0, now)
    assert deliver(engine, transport, now, max_attempts=3) == 1
    assert transport.sent == [again.message_id]


def test_permanent_error_from_any_transport_fails_at_once(
    engine: Engine, settings: Settings
) -> None:
    [row_id] = queue(engine, settings)
    assert deliver(engine, Scripted(PermanentDeliveryError("554 rejected")), T0) == 0
    assert row(engine, row_id).status == OUTBOUND_FAILED


def test_unexpected_transport_error_counts_as_a_transient_attempt(
    engine: Engine, settings: Settings
) -> None:
    [row_id] = queue(engine, settings)
    assert deliver(engine, Scripted(RuntimeError("bug")), T0) == 0
    waiting = row(engine, row_id)
    assert (waiting.status, waiting.attempts) == (OUTBOUND_PENDING, 1)
    assert waiting.last_error == "unexpected RuntimeError: bug"


def test_retry_refuses_what_is_not_failed(engine: Engine, settings: Settings) -> None:
    [row_id] = queue(engine, settings)
    with session_scope(engine) as session, pytest.raises(OutboxError, match="only failed"):
        retry_outbox(session, row_id)
    with session_scope(engine) as session, pytest.raises(NotFoundError):
        retry_outbox(session, row_id + 1000)
    with session_scope(engine) as session, pytest.raises(OutboxError, match="unknown"):
        list_outbox(session, "lost")


def test_list_outbox_is_json_ready(engine: Engine, settings: Settings) -> None:
    import json

    queue(engine, settings, 2)
    with session_scope(engine) as session:
        listed = list_outbox(session)
    assert [r["subject"] for r in listed] == ["【NSS】受付完了 0", "【NSS】受付完了 1"]
    assert listed[0]["next_attempt_at"] == T0.isoformat()
    assert "raw" not in listed[0]
    json.dumps(listed)


def test_a_slow_batch_hands_back_what_it_could_not_send_in_time(
    engine: Engine, settings: Settings
) -> None:
    ids = queue(engine, settings, 4)

    class Slow(Scripted):
        async def send(self, mail: OutboundMessage) -> None:
            await asyncio.sleep(0.3)
            await super().send(mail)

    transport = Slow()
    # Half of a one-second lease: one or two sends fit, the rest go back unclaimed.
    sent = deliver(engine, transport, T0, lease=timedelta(seconds=1))
    assert 1 <= sent < 4
    rest = [row(engine, i) for i in ids[sent:]]
    assert all((r.status, r.attempts, r.next_attempt_at) == (OUTBOUND_PENDING, 0, T0) for r in rest)
    assert deliver(engine, transport, T0) == 4 - sent
    assert sorted(transport.sent) == sorted(row(engine, i).message_id for i in ids)


def test_run_outbox_survives_a_failed_round_delivers_and_stops(
    engine: Engine, settings: Settings
) -> None:
    queue(engine, settings, 3)
    ticks = 0

    def clock() -> datetime:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise RuntimeError("a round that fails")  # caught at the loop boundary
        return T0

    folder = settings.home / "sent"  # the default relay: a Maildir in MAILBOT_HOME

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_outbox(engine, settings, stop, clock=clock, poll_seconds=0.01)
        )
        for _ in range(500):
            if folder.exists() and len(mailbox.Maildir(folder, create=False)) == 3:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(main())
    assert ticks >= 2
    assert len(mailbox.Maildir(folder, create=False)) == 3
    with session_scope(engine) as session:
        assert len(list_outbox(session, OUTBOUND_SENT)) == 3


# Loops and bounces ------------------------------------------------------------------------


def test_autoreply_allowance_stops_at_the_limit_and_resets_next_day(engine: Engine) -> None:
    day = date(2026, 5, 1)
    with session_scope(engine) as session:
        answers = [take_autoreply_allowance(session, "Robot@Example.jp", day, 3) for _ in range(5)]
        # Same address however it is written: the count is per mailbox.
        assert not take_autoreply_allowance(session, "Robot <robot@example.jp>", day, 3)
    assert answers == [True, True, True, False, False]
    with session_scope(engine) as session:
        assert take_autoreply_allowance(session, "robot@example.jp", day + timedelta(days=1), 3)
        assert take_autoreply_allowance(session, "other@example.jp", day, 3)
        assert not take_autoreply_allowance(session, "zero@example.jp", day, 0)


def test_mark_bounced_matches_ids_with_or_without_brackets(
    engine: Engine, settings: Settings
) -> None:
    first, second, third = queue(engine, settings, 3)
    ids = {i: row(engine, i).message_id for i in (first, second, third)}
    with session_scope(engine) as session:
        marked = mark_bounced(
            session,
            [ids[first], ids[second].strip("<>"), "<unknown@example.jp>"],
            reason="550 5.1.1",
        )
    assert marked == 2
    with session_scope(engine) as session:
        assert mark_bounced(session, [ids[first]]) == 0  # already bounced
        assert mark_bounced(session, []) == 0
    assert row(engine, first).status == row(engine, second).status == OUTBOUND_BOUNCED
    assert row(engine, first).last_error == "550 5.1.1"
    assert row(engine, third).status == OUTBOUND_PENDING
    # A bounced row is never sent again.
    transport = Scripted()
    assert deliver(engine, transport, T0) == 1
    assert transport.sent == [ids[third]]


# Concurrency ------------------------------------------------------------------------------


def test_two_concurrent_senders_deliver_each_row_exactly_once(
    engine: Engine, settings: Settings, database_url: str
) -> None:
    total = 200
    queue(engine, settings, total)
    port = free_port()
    errors: list[BaseException] = []
    sent_by: list[int] = []

    def drain() -> None:
        own_engine = make_engine(database_url)
        try:
            transport = smtp(settings, port)
            mine = 0
            while (sent := deliver(own_engine, transport, T0, batch=5)) > 0:
                mine += sent
            sent_by.append(mine)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            own_engine.dispose()

    with running(Sink(), port) as sink:
        workers = [threading.Thread(target=drain) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    assert errors == []
    assert sum(sent_by) == total
    assert min(sent_by) > 0  # both really took part
    counts = Counter(sink.message_ids())
    assert len(counts) == total
    assert set(counts.values()) == {1}
    with session_scope(engine) as session:
        assert len(list_outbox(session, OUTBOUND_SENT)) == total
