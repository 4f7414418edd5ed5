"""An outbox that outlasts outages, on a controlled clock, against a real aiosmtpd relay sink.

The clock jumps from one due time to the next (what the outbox would see if it polled every
second for days), so two days of outage take a few dozen delivery rounds. The relay first
answers ``451`` to everything (a day), then is gone altogether (connection refused, another
day), then accepts: every notice must arrive exactly once, within the hour after the relay is
back, with no attempt more than an hour after the one before. Past
``MAILBOT_OUTBOX_GIVE_UP_HOURS`` the notices are failed, and ``retry_failed`` sends them all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import col

from db.engine import session_scope
from db.models import OUTBOUND_FAILED, OUTBOUND_PENDING, OUTBOUND_SENT, OutboundMessage
from mailbot.compose import compose
from mailbot.config import Settings, load_settings
from mailbot.outbox import RetryPolicy, deliver_due, enqueue, make_transport, retry_failed
from tests.support.smtp import Sink, free_port

T0 = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
NOTICES = 6
BUSY = "451 4.3.0 relay busy, try again later"


def relay_settings(settings: Settings, port: int, **overrides: object) -> Settings:
    return load_settings(
        home=settings.home,
        database_url=settings.database_url,
        relay=f"smtp://127.0.0.1:{port}",
        **overrides,
    )


def queue_notices(engine: Engine, settings: Settings) -> dict[int, str]:
    """NOTICES receipt notices queued at T0; {row id: Message-ID}."""
    queued = {}
    with session_scope(engine) as session:
        for n in range(NOTICES):
            to = f"applicant{n}@example.co.jp"
            mail = compose(
                settings,
                to=to,
                to_name="山田 太郎",
                subject=f"受付完了 {n}",
                body="本文\n",
                kind="receipt_complete",
                now=T0,
            )
            row_id = enqueue(
                session,
                mail,
                kind="receipt_complete",
                dedupe_key=f"outage:{n}",
                recipient=to,
                now=T0,
            )
            assert row_id is not None
            queued[row_id] = mail.message_id
    return queued


def next_due(engine: Engine) -> datetime | None:
    with session_scope(engine) as session:
        due: datetime | None = session.execute(
            select(func.min(col(OutboundMessage.next_attempt_at))).where(
                col(OutboundMessage.status) == OUTBOUND_PENDING
            )
        ).scalar_one()
    if due is None:
        return None
    return due if due.tzinfo is not None else due.replace(tzinfo=UTC)


def run_clock(
    engine: Engine, settings: Settings, start: datetime, until: datetime
) -> list[datetime]:
    """Deliver at each due time from ``start`` up to (not including) ``until``; the times of
    the rounds that found something to try."""
    transport = make_transport(settings)
    policy = RetryPolicy.from_settings(settings)
    rounds = []
    now = start
    while (due := next_due(engine)) is not None and max(due, now) < until:
        now = max(due, now)
        asyncio.run(deliver_due(engine, transport, now=now, policy=policy))
        rounds.append(now)
    return rounds


def statuses(engine: Engine) -> Counter[str]:
    with session_scope(engine) as session:
        return Counter(session.scalars(select(col(OutboundMessage.status))))


def test_a_two_day_relay_outage_then_every_notice_arrives_once(
    engine: Engine, settings: Settings
) -> None:
    relay = Sink(port=free_port())
    settings = relay_settings(settings, relay.port)
    queued = queue_notices(engine, settings)

    # Day 1: the relay is up but turns every message away with 451.
    relay.handler.reply = BUSY
    relay.start()
    try:
        busy = run_clock(engine, settings, T0, T0 + timedelta(days=1))
    finally:
        relay.stop()
    # Day 2: nothing listens at all.
    down = run_clock(engine, settings, T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert statuses(engine) == {OUTBOUND_PENDING: NOTICES}  # two days on: nothing given up
    assert relay.deliveries == []

    # Back, and accepting.
    back = T0 + timedelta(days=2)
    relay.handler.reply = None
    relay.start()
    try:
        after = run_clock(engine, settings, back, back + timedelta(days=10))
        assert next_due(engine) is None  # nothing left to send, ever
    finally:
        relay.stop()

    rounds = busy + down + after
    gaps = [later - earlier for earlier, later in itertools.pairwise(rounds)]
    assert max(gaps) <= timedelta(hours=1), "retried more than an hour apart"
    assert after[0] - back <= timedelta(hours=1), "not tried within the hour of the relay's return"
    assert statuses(engine) == {OUTBOUND_SENT: NOTICES}
    delivered = Counter(_message_id(d.content) for d in relay.deliveries)
    assert delivered == Counter(queued.values()), "each notice exactly once"
    with session_scope(engine) as session:
        rows = session.scalars(select(OutboundMessage)).all()
    for row in rows:
        assert row.attempts >= 40  # tried all along (about hourly for two days)
        assert row.sent_at is not None and row.sent_at.replace(tzinfo=UTC) - back <= timedelta(
            hours=1
        )


def test_past_the_give_up_time_notices_fail_and_retry_failed_sends_them_all_once(
    engine: Engine, settings: Settings
) -> None:
    relay = Sink(port=free_port())  # not started: down
    settings = relay_settings(settings, relay.port, outbox_give_up_hours=120)
    queued = queue_notices(engine, settings)

    run_clock(engine, settings, T0, T0 + timedelta(hours=119))
    assert statuses(engine) == {OUTBOUND_PENDING: NOTICES}
    run_clock(engine, settings, T0 + timedelta(hours=119), T0 + timedelta(hours=122))
    assert statuses(engine) == {OUTBOUND_FAILED: NOTICES}
    with session_scope(engine) as session:
        failed = session.scalars(select(OutboundMessage)).all()
    for row in failed:
        given_up = row.next_attempt_at.replace(tzinfo=UTC)
        assert timedelta(hours=120) <= given_up - T0 <= timedelta(hours=121)
        assert row.last_error is not None and str(relay.port) in row.last_error

    later = T0 + timedelta(days=6)
    with session_scope(engine) as session:
        assert retry_failed(session, now=later) == sorted(queued)
    relay.start()
    try:
        run_clock(engine, settings, later, later + timedelta(days=1))
    finally:
        relay.stop()
    assert statuses(engine) == {OUTBOUND_SENT: NOTICES}
    assert Counter(_message_id(d.content) for d in relay.deliveries) == Counter(queued.values())
    with session_scope(engine) as session:
        assert retry_failed(session, now=later) == []  # nothing failed any more


def _message_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")
