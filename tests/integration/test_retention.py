"""Retention of personal data over a controlled clock, on both databases: real mail in through
the SMTP gateway, processed by the worker; then the clock moves on and the purge runs as the
scheduler runs it (scheduler.jobs.retain) and as `mailbot inbound purge` does.

Outsiders' raw mail goes after MAILBOT_RETAIN_OUTSIDER_DAYS, a contact's after
MAILBOT_RETAIN_RAW_DAYS; what stays is the row (hash, envelope, outcome), the key headers and
the audit trail; quarantined mail stays until it is handled, and its clock starts then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from db.engine import session_scope
from db.models import AuditEvent, InboundMessage, OutboundMessage
from mailbot.calendar import BusinessCalendar
from mailbot.retention import RetentionPolicy, purge
from scheduler.config import schedule_config
from scheduler.jobs import JobContext, retain
from tests.integration.test_cli import Cli
from tests.support.harness import Harness
from tests.support.requests import OUTSIDER, YAMADA, form, mail

DAY = timedelta(days=1)


def by_sender(h: Harness) -> dict[str, InboundMessage]:
    return {m.envelope_from or "": m for m in h.inbound()}


def run_job(h: Harness, now: datetime) -> None:
    """The scheduler's daily job, with the clock at ``now``."""
    context = JobContext(
        engine=h.engine,
        settings=h.settings,
        config=schedule_config(h.settings),
        calendar=BusinessCalendar(),
        clock=lambda: now,
    )
    retain(context)


def audit(h: Harness) -> list[tuple[str, int | None]]:
    with session_scope(h.engine) as session:
        events = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        return [(e.event, e.inbound_id) for e in events]


@pytest.fixture
def sent() -> dict[str, bytes]:
    """A contact's request, an outsider's, and one whose processing fails."""
    return {
        YAMADA: mail(form("1ANACA0A", start="2026年12月15日"), subject="利用者ID廃止申込"),
        OUTSIDER: mail(form("1ANACA0A", start="2026年12月15日"), sender=OUTSIDER),
        "broken@example.co.jp": mail("x", sender="山田@example.co.jp"),
    }


@pytest.fixture
def mail_in(harness: Harness, sent: dict[str, bytes]) -> Harness:
    """The mails of ``sent`` through the gateway, processed at the harness's clock: accepted,
    refused (an outsider), quarantined (a sender address no reply can go to)."""
    for envelope_from, raw in sent.items():
        harness.send(raw, mail_from=envelope_from)
    harness.process()
    harness.deliver()
    kinds = {sender: m.status for sender, m in by_sender(harness).items()}
    assert kinds == {YAMADA: "done", OUTSIDER: "done", "broken@example.co.jp": "quarantined"}
    return harness


def test_outsiders_go_after_a_week_contacts_after_90_days_quarantine_stays(
    mail_in: Harness,
) -> None:
    h = mail_in
    t0 = h.now
    before = {s: (m.sha256, m.size, bytes(m.raw)) for s, m in by_sender(h).items()}
    trail = audit(h)
    assert any(inbound == by_sender(h)[YAMADA].id for _, inbound in trail)

    run_job(h, t0 + 7 * DAY - timedelta(minutes=1))
    assert all(m.raw_removed_at is None for m in h.inbound())  # nothing is due yet

    run_job(h, t0 + 7 * DAY + timedelta(minutes=1))
    now = by_sender(h)
    assert bytes(now[OUTSIDER].raw) == b"" and now[OUTSIDER].raw_removed_at is not None
    assert bytes(now[YAMADA].raw) == before[YAMADA][2]  # a contact's mail: not yet
    assert bytes(now["broken@example.co.jp"].raw) == before["broken@example.co.jp"][2]
    # What is kept of the outsider's mail: the row, its hash and size, and the key headers.
    assert (now[OUTSIDER].sha256, now[OUTSIDER].size) == before[OUTSIDER][:2]
    assert now[OUTSIDER].kind == "refused"
    headers = now[OUTSIDER].headers or {}
    assert headers["subject"] == "利用者ID廃止申込" and OUTSIDER in headers["from"]
    assert {"to", "date"} <= set(headers)

    run_job(h, t0 + 91 * DAY)
    now = by_sender(h)
    assert bytes(now[YAMADA].raw) == b""
    assert (now[YAMADA].headers or {}).get("from") == f"山田 太郎 <{YAMADA}>"
    # Quarantined mail is kept, however old, until an operator handles it.
    assert bytes(now["broken@example.co.jp"].raw) == before["broken@example.co.jp"][2]
    assert now["broken@example.co.jp"].raw_removed_at is None
    # The audit trail is untouched, and says what retention removed.
    after = audit(h)
    assert after[: len(trail)] == trail
    assert [event for event, _ in after[len(trail) :]] == ["raw_mail_removed"] * 2
    (application,) = h.applications()
    assert application.applicant_phone == "03-1234-5678"  # the application itself stays

    # Sent notices lose their bytes after 90 days too; subject and recipient stay.
    notices = h.outbound()
    assert notices and all(n.raw is None and n.raw_removed_at for n in notices)
    assert all(n.subject and n.recipient and n.message_id for n in notices)


def test_a_removed_message_redelivered_is_still_recognised(
    mail_in: Harness, sent: dict[str, bytes]
) -> None:
    h = mail_in
    run_job(h, h.now + 91 * DAY)
    assert bytes(by_sender(h)[YAMADA].raw) == b""
    refused = h.send(sent[YAMADA], mail_from=YAMADA)  # the sender's server tries again
    assert refused == {}  # 250: taken, and stored once (its hash was kept)
    assert len(h.inbound()) == 3


def test_purging_twice_changes_nothing_more(mail_in: Harness) -> None:
    h = mail_in
    later = h.now + 91 * DAY
    first = purge(h.engine, RetentionPolicy.from_settings(h.settings, later), now=later)
    assert (first.messages, first.outsiders) == (2, 0)  # both past 90 days: none counted early
    assert first.notices == len(h.outbound()) and first.bytes_removed > 0
    again = purge(h.engine, RetentionPolicy.from_settings(h.settings, later), now=later)
    assert (again.messages, again.notices, again.bytes_removed) == (0, 0, 0)


def test_quarantined_mail_is_purged_only_once_handled_counted_from_then(
    mail_in: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = mail_in
    broken = by_sender(h)["broken@example.co.jp"]
    run_job(h, h.now + 200 * DAY)
    assert bytes(h.inbound()[2].raw) != b""
    # An operator handles it 200 days later: reprocessed, it is done (an unreadable sender).
    handled = h.now + 200 * DAY
    with session_scope(h.engine) as session:
        row = session.get(InboundMessage, broken.id)
        assert row is not None
        row.status, row.processed_at = "done", handled
        session.add(row)
    run_job(h, handled + 6 * DAY)  # an outsider's address: its week starts when handled
    assert bytes(by_sender(h)["broken@example.co.jp"].raw) != b""
    run_job(h, handled + 8 * DAY)
    assert bytes(by_sender(h)["broken@example.co.jp"].raw) == b""


def test_inbound_purge_before_a_date_and_show_raw_afterwards(
    mail_in: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    h = mail_in
    cli = Cli(tmp_path / "home", database_url, monkeypatch)
    yamada = by_sender(h)[YAMADA]
    dry = cli("inbound", "purge", "--before", "2099-01-01", "--dry-run")
    assert dry.returncode == 0 and "would have removed the raw bytes of 2 message(s)" in dry.stdout
    assert bytes(by_sender(h)[YAMADA].raw) != b""

    # Processed on 2026-11-27 (Tokyo): --before that day removes nothing, the day after does.
    same_day = cli.json("inbound", "purge", "--before", "2026-11-27")
    assert isinstance(same_day, dict) and same_day["messages"] == 0
    result = cli("inbound", "purge", "--before", "2026-11-28")
    assert result.returncode == 0
    assert "removed the raw bytes of 2 message(s)" in result.stdout
    assert by_sender(h)["broken@example.co.jp"].raw_removed_at is None  # quarantined: kept

    shown = cli("inbound", "show", str(yamada.id), "--raw")
    assert shown.returncode == 1
    assert "were removed on" in shown.stderr and "MAILBOT_RETAIN_RAW_DAYS" in shown.stderr
    kept = cli.json("inbound", "show", str(yamada.id))
    assert isinstance(kept, dict) and kept["headers"]["subject"] == "利用者ID廃止申込"
    assert kept["raw_removed_at"].endswith("+09:00")


def test_the_scheduler_runs_retention_daily_at_its_time(mail_in: Harness) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from scheduler.setup import RETENTION_JOB, add_service_jobs

    h = mail_in
    context = JobContext(
        engine=h.engine,
        settings=h.settings,
        config=schedule_config(h.settings),
        calendar=BusinessCalendar(),
    )
    scheduler = AsyncIOScheduler(timezone=h.settings.zone)
    add_service_jobs(scheduler, context)
    job = scheduler.get_job(RETENTION_JOB)
    assert job is not None and job.func is retain
    fire: Callable[..., datetime] = job.trigger.get_next_fire_time
    first = fire(None, datetime(2026, 12, 7, 12, 0, tzinfo=h.settings.zone))
    assert first == datetime(2026, 12, 8, 3, 30, tzinfo=h.settings.zone)
    assert fire(first, first + timedelta(seconds=1)) == first + DAY


def test_nothing_unprocessed_is_touched(harness: Harness) -> None:
    harness.send(mail(form("1ANACA0A", start="2026年12月15日")))  # stored, not processed
    run_job(harness, harness.now + 1000 * DAY)
    (pending,) = harness.inbound()
    assert pending.status == "pending" and bytes(pending.raw) != b""
    with session_scope(harness.engine) as session:
        assert session.exec(select(OutboundMessage)).all() == []
