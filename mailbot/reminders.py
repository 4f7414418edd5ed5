"""Review reminders: each business morning, one digest per staff member of what still waits.

The receipt notice tells applicants the answer may come from the next business day on
(docs/domain.md rule 6). An application still under review after more than one business day is
overdue; each active staff member gets one mail listing the overdue applications, oldest
first, leaving out those they have already approved (two-person approval waits for another).
The dedupe key names the day and the member, so however often this runs on a day (the cron
job, a restart's catch-up, two processes), each member gets at most one digest that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, func, select
from sqlmodel import Session, SQLModel, col

from db.models import (
    UNDER_REVIEW,
    Application,
    AuditEvent,
    Office,
    OutboundMessage,
    Staff,
)
from mailbot import notices
from mailbot.applications import user_id_counts
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.notify import queue_staff_mail, status_url
from mailbot.staff import active_staff

# "More than one business day": received on Monday, overdue from Wednesday morning.
OVERDUE_AFTER_BUSINESS_DAYS = 1

_APPLICATION: Table = SQLModel.metadata.tables[Application.__tablename__]
_OFFICE: Table = SQLModel.metadata.tables[Office.__tablename__]


# --- pure ----------------------------------------------------------------------------------


def reminders_due(
    now: datetime, zone: Any, reminder_time: time, calendar: BusinessCalendar
) -> bool:
    """Whether today's digest should have gone out by ``now``: a business day, past the time."""
    local = now.astimezone(zone)
    return calendar.is_business_day(local.date()) and local.time() >= reminder_time


def overdue_cutoff(
    calendar: BusinessCalendar, today: date, more_than: int = OVERDUE_AFTER_BUSINESS_DAYS
) -> date:
    """The latest receipt date that is overdue ``today``: more than ``more_than`` business
    days lie between it and today."""
    day = today - timedelta(days=1)
    while calendar.business_days_between(day, today) <= more_than:
        day -= timedelta(days=1)
    return day


def reminder_dedupe_key(today: date, email: str) -> str:
    return notices.dedupe_key(notices.day_cause(today), notices.REVIEW_REMINDER, email)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    application_id: int
    version: int
    receipt_no: str
    office_code: str
    company: str
    office_name: str
    received_on: date
    proposed_start_date: date
    user_ids: int
    business_days: int
    status_url: str


def waiting_applications(
    session: Session, settings: Settings, calendar: BusinessCalendar, now: datetime
) -> list[Waiting]:
    """Applications under review for more than a business day at ``now``, oldest first."""
    today = now.astimezone(settings.zone).date()
    cutoff = overdue_cutoff(calendar, today)
    a, o = _APPLICATION.c, _OFFICE.c
    counts = user_id_counts()
    rows = session.execute(
        select(
            a.id,
            a.version,
            a.receipt_no,
            a.office_code,
            o.company,
            o.office_name,
            a.received_on,
            a.proposed_start_date,
            func.coalesce(counts.c.n, 0),
        )
        .join(_OFFICE, o.code == a.office_code)
        .outerjoin(counts, counts.c.application_id == a.id)
        .where(a.status == UNDER_REVIEW, a.received_on <= cutoff)
        .order_by(a.received_at, a.id)
    ).all()
    return [
        Waiting(
            application_id=row[0],
            version=row[1],
            receipt_no=row[2],
            office_code=row[3],
            company=row[4],
            office_name=row[5],
            received_on=row[6],
            proposed_start_date=row[7],
            user_ids=int(row[8]),
            business_days=calendar.business_days_between(row[6], today),
            status_url=status_url(session, settings, row[2], now),
        )
        for row in rows
    ]


def _approved_by(session: Session, waiting: list[Waiting]) -> set[tuple[int, str]]:
    """(application id, staff email) for approvals already given at the current version."""
    versions = {w.application_id: w.version for w in waiting}
    events = session.scalars(
        select(AuditEvent).where(
            col(AuditEvent.event) == "approval",
            col(AuditEvent.application_id).in_(list(versions)),
        )
    ).all()
    return {
        (e.application_id, e.actor)
        for e in events
        if e.application_id is not None
        and e.detail.get("version") == versions.get(e.application_id)
    }


def _already_sent(session: Session, keys: list[str]) -> set[str]:
    column = col(OutboundMessage.dedupe_key)
    return set(session.scalars(select(column).where(column.in_(keys))).all())


# --- sending ---------------------------------------------------------------------------------


def send_review_reminders(
    session: Session, settings: Settings, calendar: BusinessCalendar, now: datetime
) -> int:
    """Queue today's digests (in the caller's transaction); how many were queued.

    Nothing on a non-business day, nothing when nothing is overdue, nothing for a member
    who already got today's digest.
    """
    today = now.astimezone(settings.zone).date()
    if not calendar.is_business_day(today):
        return 0
    waiting = waiting_applications(session, settings, calendar, now)
    if not waiting:
        return 0
    members = active_staff(session)
    # Look before composing: a digest is expensive to render and usually already sent.
    done = _already_sent(session, [reminder_dedupe_key(today, m.email) for m in members])
    approved = _approved_by(session, waiting)
    queued = 0
    for member in members:
        key = reminder_dedupe_key(today, member.email)
        rows = [w for w in waiting if (w.application_id, member.email) not in approved]
        if key in done or not rows:
            continue
        queued += _queue_digest(session, settings, member, rows, today, now)
    return queued


def _queue_digest(
    session: Session,
    settings: Settings,
    member: Staff,
    rows: list[Waiting],
    today: date,
    now: datetime,
) -> bool:
    values = {"rows": rows, "count": len(rows), "min_business_days": OVERDUE_AFTER_BUSINESS_DAYS}
    return queue_staff_mail(
        session,
        settings,
        member,
        notices.REVIEW_REMINDER,
        values,
        cause=notices.day_cause(today),
        now=now,
    )
