"""Review reminders: one digest per staff member per business morning, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from db.engine import session_scope
from db.models import Application, OutboundMessage
from mailbot.calendar import BusinessCalendar
from mailbot.reminders import send_review_reminders
from mailbot.review import Action, Decision, ReviewContext, decide
from mailbot.staff import add_staff, find_staff
from scheduler.config import ScheduleConfig
from scheduler.jobs import JobContext, catch_up
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.requests import ITO, KATO, form, mail

STAFF2 = "staff2@mailbot.localhost"
FRIDAY = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
MONDAY_9 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
TUESDAY_9 = MONDAY_9 + timedelta(days=1)
WEDNESDAY_9 = MONDAY_9 + timedelta(days=2)
SATURDAY_9 = MONDAY_9 + timedelta(days=5)


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    running = harness_factory(approvals_required=2)
    with session_scope(running.engine) as session:
        add_staff(session, STAFF2, "審査 次郎")
    return running


def receive(h: Harness, at: datetime, body: str, sender: str = "yamada@example.co.jp") -> str:
    h.now = at
    h.round_trip(mail(body, sender=sender), mail_from=sender)
    return h.applications()[-1].receipt_no


def remind(h: Harness, now: datetime) -> int:
    with session_scope(h.engine) as session:
        return send_review_reminders(session, h.settings, BusinessCalendar(), now)


def digests(h: Harness) -> dict[str, list[str]]:
    """Recipient -> the text of each reminder queued for them."""
    found: dict[str, list[str]] = {}
    with session_scope(h.engine) as session:
        rows = session.scalars(
            select(OutboundMessage)
            .where(col(OutboundMessage.kind) == "review_reminder")
            .order_by(col(OutboundMessage.id))
        )
        for row in rows:
            found.setdefault(row.recipient, []).append(row.dedupe_key)
    return found


def test_reminders_after_more_than_one_business_day_oldest_first(h: Harness) -> None:
    first = receive(h, FRIDAY, form("1ANACA0A", start="2026-12-15"))
    second = receive(
        h,
        FRIDAY + timedelta(hours=1),
        form("2BXYZ001", start="2026-12-15", office_code="OSK01", manager_email=ITO),
        sender=KATO,
    )
    monday = receive(h, MONDAY_9 + timedelta(hours=1), form("1ANACA0B", start="2026-12-15"))

    assert remind(h, MONDAY_9) == 0  # Friday's are one business day old: not yet
    assert remind(h, TUESDAY_9) == 2  # one digest each for the two staff members
    assert remind(h, TUESDAY_9 + timedelta(hours=3)) == 0  # once a day, however often it runs
    assert remind(h, SATURDAY_9) == 0  # not on a day off
    assert remind(h, WEDNESDAY_9) == 2
    assert digests(h) == {
        STAFF: [f"reminder:2026-12-01:{STAFF}", f"reminder:2026-12-02:{STAFF}"],
        STAFF2: [f"reminder:2026-12-01:{STAFF2}", f"reminder:2026-12-02:{STAFF2}"],
    }

    h.now = WEDNESDAY_9
    h.deliver()
    mails = [m for m in h.new_mail() if "審査待ち" in str(m["Subject"])]
    tuesday_mail = next(m for m in mails if "2件" in str(m["Subject"]))
    text = body_text(tuesday_mail)
    assert text.index(first) < text.index(second) and monday not in text
    assert "受付 2026年11月27日（金）（2営業日経過）" in text
    wednesday = body_text(next(m for m in mails if "3件" in str(m["Subject"])))
    assert wednesday.index(first) < wednesday.index(second) < wednesday.index(monday)


def test_a_member_who_approved_is_not_reminded_of_it(h: Harness) -> None:
    receipt_no = receive(h, FRIDAY, form("1ANACA0A", start="2026-12-15"))
    ctx = ReviewContext(settings=h.settings, calendar=BusinessCalendar(), now=FRIDAY)
    with session_scope(h.engine) as session:
        application = session.scalars(select(Application)).one()
        decide(
            session,
            ctx,
            application,
            find_staff(session, STAFF),
            Decision(Action.APPROVE),
            via="cli",
        )
    assert remind(h, TUESDAY_9) == 1  # two approvals needed: only the other member is asked
    assert list(digests(h)) == [STAFF2]
    assert receipt_no


def test_the_scheduler_catches_up_the_days_reminders_at_start(h: Harness) -> None:
    receive(h, FRIDAY, form("1ANACA0A", start="2026-12-15"))

    def context(now: datetime) -> JobContext:
        return JobContext(
            engine=h.engine,
            settings=h.settings,
            config=ScheduleConfig(reminder_time=time(9, 0)),
            calendar=BusinessCalendar(),
            clock=lambda: now,
        )

    catch_up(context(TUESDAY_9 - timedelta(minutes=1)))  # 08:59: the cron job will send them
    assert digests(h) == {}
    catch_up(context(TUESDAY_9 + timedelta(hours=2)))  # started at 11:00: sends them now
    assert sorted(digests(h)) == sorted([STAFF, STAFF2])
