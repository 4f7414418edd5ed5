"""The outbox on SQLite and PostgreSQL: enqueueing once, delivering to a real Maildir and a real
SMTP sink (aiosmtpd), retries with backoff, permanent failures, bounces, and concurrent senders.
"""

from __future__ import annotations

import asyncio
import email
import mailbox
import signal
import subprocess
import sys
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
from sqlalchemy import Engine, Integer, cast, event, func, literal, null, select
from sqlmodel import col

from db.engine import make_engine, session_scope
from db.models import (
    OUTBOUND_BOUNCED,
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_SENT,
    OutboundMessage,
    Token,
)
from mailbot.compose import ComposedMail, compose
from mailbot.config import RelayTarget, Settings
from mailbot.errors import NotFoundError
from mailbot.notify import intent_renderer
from mailbot.outbox import (
    LEASE,
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
from tests.support.smtp import free_port

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
            row_id = enqueue(
                session,
                composed(settings, n),
                kind="receipt_complete",
                dedupe_key=f"app:{n}:receipt_complete:{RECIPIENT}",
                recipient=RECIPIENT,
                now=now,
            )
            assert row_id is not None
            ids.append(row_id)
    return ids


def row(engine: Engine, row_id: int) -> OutboundMessage:
    with session_scope(engine) as session:
        found = session.get(OutboundMessage, row_id)
        assert found is not None
        return found


def deliver(
    engine: Engine,
    transport: Any,
    now: datetime,
    *,
    settings: Settings | None = None,
    **options: Any,
) -> int:
    """deliver_due; with ``settings``, rendering intents as serve does."""
    options.setdefault("max_attempts", 5)
    options.setdefault("backoff_seconds", 30.0)
    if settings is not None:
        options["render"] = intent_renderer(settings)
    return asyncio.run(deliver_due(engine, transport, now=now, **options))


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

    idempotent = False  # like a relay: each send is recorded at once

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
        stored = session.get(OutboundMessage, first) if first is not None else None
        assert stored is not None and stored.status == OUTBOUND_PENDING
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


class CrashAfterWriting(MaildirTransport):
    """Writes into the Maildir, then dies before the outbox can record the send."""

    async def send(self, mail: OutboundMessage) -> None:
        await super().send(mail)
        raise KeyboardInterrupt("killed between the write and its record")


@pytest.mark.parametrize("read_meanwhile", [False, True])
def test_a_crash_between_writing_and_recording_leaves_one_file(
    engine: Engine, settings: Settings, tmp_path: Path, read_meanwhile: bool
) -> None:
    [row_id] = queue(engine, settings)
    folder = tmp_path / "sent"
    with pytest.raises(KeyboardInterrupt):
        deliver(engine, CrashAfterWriting(folder), T0)
    assert row(engine, row_id).status == OUTBOUND_PENDING  # the send was never recorded
    if read_meanwhile:  # a mail reader saw it and moved it to cur/ as NAME:2,S
        [written] = (folder / "new").iterdir()
        written.rename(folder / "cur" / f"{written.name}:2,S")
    # After the lease, another round claims the row again and finds its file.
    assert deliver(engine, MaildirTransport(folder), T0 + LEASE + timedelta(seconds=1)) == 1
    box = mailbox.Maildir(folder, create=False)
    assert len(box) == 1
    assert row(engine, row_id).status == OUTBOUND_SENT
    [key] = box.keys()
    assert box.get_bytes(key) == row(engine, row_id).raw


def test_a_round_of_maildir_sends_is_recorded_in_one_commit(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    queue(engine, settings, 5)
    commits = 0

    def count(_connection: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", count)
    try:
        assert deliver(engine, MaildirTransport(tmp_path / "sent"), T0) == 5
    finally:
        event.remove(engine, "commit", count)
    assert commits == 2  # the claim, and the record of all five
    assert len(mailbox.Maildir(tmp_path / "sent", create=False)) == 5


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
            run_outbox(
                engine,
                settings,
                stop,
                render=intent_renderer(settings),
                clock=clock,
                poll_seconds=0.01,
            )
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


# Intents: rendered once, when first claimed -----------------------------------------------

APPLY_NOW = datetime(2026, 12, 14, 15, 30, tzinfo=UTC)  # 2026-12-15 00:30 in Tokyo


class Keeping:
    """A transport that fails as told, then keeps the bytes it sends, per Message-ID."""

    idempotent = False

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, mail: OutboundMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        assert mail.raw is not None
        self.sent.append((mail.message_id, mail.raw))


def applied_intents(engine: Engine, settings: Settings, applications: int = 1) -> list[int]:
    """Apply ``applications`` seeded applications; the ids of the notice intents queued."""
    from bench.apply import seed
    from mailbot.applying import apply_due

    seed(engine, applications, 3)
    report = apply_due(engine, settings, APPLY_NOW)
    assert len(report.applied) == applications and not report.failed
    with session_scope(engine) as session:
        rows = session.scalars(
            select(OutboundMessage).where(col(OutboundMessage.kind) == "applied")
        ).all()
        assert all(r.raw is None and r.subject is None for r in rows)  # intents, not messages
        return sorted(r.id for r in rows if r.id is not None)


def tokens_issued(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(Token)) or 0)


def test_an_intent_is_rendered_once_and_every_retry_sends_the_same_bytes(
    engine: Engine, settings: Settings
) -> None:
    ids = applied_intents(engine, settings)
    assert len(ids) == 2  # applicant and manager (different addresses in the seed)
    queued_ids = {i: row(engine, i).message_id for i in ids}
    relay = Keeping(TransientDeliveryError("451 busy"), TransientDeliveryError("451 busy"))

    assert deliver(engine, relay, APPLY_NOW, settings=settings) == 0
    rendered = {i: row(engine, i) for i in ids}
    for i, mail in rendered.items():
        assert mail.raw is not None and mail.attempts == 1 and mail.status == OUTBOUND_PENDING
        assert mail.subject == "【NSS】利用者ID廃止の適用完了のお知らせ（260001A）"
        assert mail.message_id == queued_ids[i]  # the Message-ID fixed when it was queued
        assert f"Message-ID: {mail.message_id}\r\n".encode() in mail.raw
    assert tokens_issued(engine) == 2  # one reply token per recipient, issued with the bytes

    later = APPLY_NOW + timedelta(hours=1)
    assert deliver(engine, relay, later, settings=settings) == 2
    assert sorted(relay.sent) == sorted((m.message_id, m.raw) for m in rendered.values())
    assert tokens_issued(engine) == 2  # not rendered again
    assert {row(engine, i).status for i in ids} == {OUTBOUND_SENT}


def test_the_applied_notice_says_what_applying_changed(engine: Engine, settings: Settings) -> None:
    (first, _) = applied_intents(engine, settings)
    relay = Keeping()
    assert deliver(engine, relay, APPLY_NOW, settings=settings) == 2
    message = email.message_from_bytes(
        next(raw for mid, raw in relay.sent if mid == row(engine, first).message_id),
        policy=policy.default,
    )
    assert str(message["To"]) == "申込 太郎 様 <applicant@bench.example.co.jp>"
    assert "apply+a" in str(message["Reply-To"])
    part = message.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert "  Q0000000（一般NACCS）\n  Q0000001（一般NACCS）\n  Q0000002（一般NACCS）\n" in text
    assert "■あわせて廃止した利用者コード\n  Q0000\n" in text
    assert "■引き続き有効な利用者コード" not in text
    assert "/a/260001A?t=" in text


def test_intents_wait_for_a_deliverer_that_can_render_them(
    engine: Engine, settings: Settings
) -> None:
    ids = applied_intents(engine, settings)
    relay = Keeping()
    assert deliver(engine, relay, APPLY_NOW) == 0  # no settings: rendered rows only
    assert {(row(engine, i).attempts, row(engine, i).raw) for i in ids} == {(0, None)}
    assert deliver(engine, relay, APPLY_NOW, settings=settings) == 2


def test_an_intent_that_cannot_be_rendered_counts_attempts_and_fails(
    engine: Engine, settings: Settings
) -> None:
    from mailbot.outbox import enqueue_intents

    with session_scope(engine) as session:
        rows = select(
            literal("no_such_kind").label("kind"),
            literal("intent:1").label("dedupe_key"),
            cast(null(), Integer).label("application_id"),
            cast(null(), Integer).label("inbound_id"),
            literal(RECIPIENT).label("recipient"),
            literal("<intent.1@mailbot.localhost>").label("message_id"),
        )
        assert enqueue_intents(session, rows, now=T0) == 1
        assert enqueue_intents(session, rows, now=T0) == 0  # the same dedupe key: skipped
    relay = Keeping()
    assert deliver(engine, relay, T0, settings=settings, max_attempts=2) == 0
    with session_scope(engine) as session:
        (failed,) = session.scalars(select(OutboundMessage)).all()
    assert failed.raw is None and failed.attempts == 1 and failed.status == OUTBOUND_PENDING
    assert failed.last_error is not None and "no renderer" in failed.last_error
    assert deliver(engine, relay, T0 + timedelta(hours=1), settings=settings, max_attempts=2) == 0
    assert row(engine, failed.id or 0).status == OUTBOUND_FAILED and relay.sent == []


def test_a_claim_that_dies_after_rendering_stores_nothing_and_the_next_sends_once(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The render and the claim commit together: a crash in between (here a process-ending
    exception) leaves the intent as it was, and the next claim renders and sends it, once."""
    ids = applied_intents(engine, settings)
    import mailbot.notify as notify

    real = notify.render_intent

    def render_then_die(*args: Any) -> None:
        real(*args)
        raise SystemExit("killed mid-claim")

    monkeypatch.setattr(notify, "render_intent", render_then_die)
    with pytest.raises(SystemExit):
        deliver(engine, Keeping(), APPLY_NOW, settings=settings)
    assert {(row(engine, i).attempts, row(engine, i).raw) for i in ids} == {(0, None)}
    assert tokens_issued(engine) == 0

    monkeypatch.setattr(notify, "render_intent", real)
    relay = Keeping()
    assert deliver(engine, relay, APPLY_NOW, settings=settings) == 2
    assert deliver(engine, relay, APPLY_NOW + timedelta(hours=1), settings=settings) == 0
    assert len(relay.sent) == 2 and tokens_issued(engine) == 2


def test_a_crash_right_after_the_apply_commit_still_delivers_each_notice_once(
    database_url: str, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """kill -9 of the applying process the moment apply_due returns: the intents committed
    with the change, so another process delivers each notice, once."""
    from bench.apply import seed

    seed(engine, 3, 2)
    script = tmp_path / "apply_then_die.py"
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "from db.engine import make_engine\n"
        "from mailbot.applying import apply_due\n"
        "from mailbot.config import load_settings\n"
        f"url = {database_url!r}\n"
        f"settings = load_settings(home=Path({str(settings.home)!r}), database_url=url)\n"
        f"report = apply_due(make_engine(url), settings, datetime.fromisoformat({APPLY_NOW.isoformat()!r}))\n"
        "assert len(report.applied) == 3\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert finished.returncode == -signal.SIGKILL, finished.stderr.decode()

    relay = Keeping()
    assert deliver(engine, relay, APPLY_NOW, settings=settings) == 6
    assert deliver(engine, relay, APPLY_NOW + timedelta(hours=1), settings=settings) == 0
    assert len({mid for mid, _ in relay.sent}) == 6
