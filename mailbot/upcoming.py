"""The next registration dates as replies show them, with the earliest a request sent now gets.

The guide's applicant picks a start date from the schedule table behind a link; here every
reply that asks for one (help, problem replies, the contract reply) lists the next dates and
marks the earliest the lead allows (docs/domain.md rule 5: ``lead`` business days after today,
weekends, holidays and 12/29–1/3 not counted), so nobody has to guess. ``mailbot schedule
list`` marks it the same way. The earliest date is the one :func:`mailbot.rules.rule5_start_date`
accepts: both come from :meth:`BusinessCalendar.add_business_days`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session

from mailbot.calendar import BusinessCalendar, next_registration_date
from mailbot.schedule_table import registration_dates

SHOWN = 6  # registration dates listed in a reply


@dataclass(frozen=True)
class ScheduledDate:
    day: date
    earliest: bool  # the first one a request sent today can get
    too_soon: bool  # before the earliest start date: a request sent today cannot get it


@dataclass(frozen=True)
class Upcoming:
    """What a reply says about start dates, as of ``today``."""

    today: date
    lead_business_days: int
    earliest_start: date  # the earliest start date the lead allows (any day)
    earliest_registration: date | None  # the first registration date on or after it
    dates: tuple[ScheduledDate, ...]  # the next registration dates from today on


def upcoming(
    dates: Iterable[date],
    calendar: BusinessCalendar,
    today: date,
    lead_business_days: int,
    count: int = SHOWN,
) -> Upcoming:
    """The next ``count`` registration dates from ``today`` on, the earliest allowed marked.

    Dates too soon for the lead are listed (marked) as long as they are among the next
    ``count``, so the list matches the schedule table the applicant may have; when the earliest
    allowed one lies beyond them it is still named in ``earliest_registration``.
    """
    known = sorted({day for day in dates if day >= today})
    earliest_start = calendar.add_business_days(today, lead_business_days)
    earliest = next_registration_date(known, earliest_start)
    shown = tuple(
        ScheduledDate(day=day, earliest=day == earliest, too_soon=day < earliest_start)
        for day in known[:count]
    )
    return Upcoming(today, lead_business_days, earliest_start, earliest, shown)


def load_upcoming(
    session: Session,
    calendar: BusinessCalendar,
    today: date,
    lead_business_days: int,
    count: int = SHOWN,
) -> Upcoming:
    """:func:`upcoming` over the schedule in the database."""
    dates = registration_dates(session, on_or_after=today)
    return upcoming(dates, calendar, today, lead_business_days, count)
