"""Japanese business days (docs/domain.md rule 6) and the schedule of registration dates (rule 5).

Not business days: Saturdays, Sundays, national holidays (with 振替休日 and 国民の休日, which
``jpholiday`` knows) and the year-end closure 12/29–1/3 (which no holiday library knows).
"today" is always an argument: this module never reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, timedelta

import jpholiday

HolidayPredicate = Callable[[date], bool]

_ONE_DAY = timedelta(days=1)


def _jpholiday_is_holiday(day: date) -> bool:
    return bool(jpholiday.is_holiday(day))


def is_year_end_closure(day: date) -> bool:
    """12/29–12/31 and 1/1–1/3: the closure every Japanese office observes."""
    return (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3)


class BusinessCalendar:
    """Business-day arithmetic; the holiday source is injectable for tests and future rules."""

    def __init__(self, is_holiday: HolidayPredicate | None = None) -> None:
        self._is_holiday: HolidayPredicate = is_holiday or _jpholiday_is_holiday

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and not is_year_end_closure(day) and not self._is_holiday(day)

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``."""
        candidate = day + _ONE_DAY
        while not self.is_business_day(candidate):
            candidate += _ONE_DAY
        return candidate

    def add_business_days(self, day: date, n: int) -> date:
        """The n-th business day after ``day``; n = 0: ``day`` if it is one, else the next.

        With the default lead of 4 this gives the earliest start date a request received on
        ``day`` can have (rule 5).
        """
        if n < 0:
            raise ValueError(f"n must be 0 or more, not {n}")
        if n == 0:
            return day if self.is_business_day(day) else self.next_business_day(day)
        result = day
        for _ in range(n):
            result = self.next_business_day(result)
        return result

    def business_days_between(self, start: date, end: date) -> int:
        """Business days in (start, end]: so ``add_business_days(a, n) == b`` gives n for n ≥ 1.

        Negative when ``end`` is before ``start``; 0 when they are equal.
        """
        if end < start:
            return -self.business_days_between(end, start)
        count = 0
        day = start + _ONE_DAY
        while day <= end:
            count += self.is_business_day(day)
            day += _ONE_DAY
        return count


def next_registration_date(dates: Iterable[date], on_or_after: date) -> date | None:
    """The first system registration date on or after ``on_or_after``; None if the schedule ends.

    ``dates`` need not be sorted or unique (it is whatever the operator loaded).
    """
    return min((d for d in dates if d >= on_or_after), default=None)
