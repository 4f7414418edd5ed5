"""Business days on the real Japanese calendar (rule 6) and the registration schedule."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.calendar import BusinessCalendar, next_registration_date

CAL = BusinessCalendar()


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (date(2026, 11, 23), "勤労感謝の日 (Monday)"),
        (date(2025, 11, 24), "振替休日 for 勤労感謝の日 on a Sunday"),
        (date(2026, 9, 21), "敬老の日"),
        (date(2026, 9, 22), "国民の休日 between 敬老の日 and 秋分の日"),
        (date(2026, 9, 23), "秋分の日"),
        (date(2026, 11, 21), "Saturday"),
        (date(2026, 11, 22), "Sunday"),
        (date(2026, 12, 29), "year-end closure"),
        (date(2026, 12, 30), "year-end closure"),
        (date(2026, 12, 31), "year-end closure"),
        (date(2027, 1, 1), "元日"),
        (date(2027, 1, 2), "year-end closure (a Saturday anyway)"),
        (date(2025, 1, 3), "year-end closure on a Friday"),
        (date(2025, 12, 29), "year-end closure on a Monday"),
    ],
)
def test_not_business_days(day: date, why: str) -> None:
    assert not CAL.is_business_day(day), why


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 11, 20),
        date(2026, 11, 24),
        date(2026, 12, 28),
        date(2027, 1, 4),
        date(2025, 1, 6),
    ],
)
def test_business_days(day: date) -> None:
    assert CAL.is_business_day(day)


def test_next_business_day_is_strictly_after() -> None:
    assert CAL.next_business_day(date(2026, 11, 24)) == date(2026, 11, 25)
    assert CAL.next_business_day(date(2026, 11, 20)) == date(2026, 11, 24)  # Sat, Sun, holiday
    assert CAL.next_business_day(date(2026, 9, 18)) == date(2026, 9, 24)  # Silver Week
    assert CAL.next_business_day(date(2026, 12, 28)) == date(2027, 1, 4)  # year-end closure
    assert CAL.next_business_day(date(2025, 11, 21)) == date(2025, 11, 25)  # 振替休日


def test_add_business_days() -> None:
    thursday = date(2026, 11, 19)
    assert CAL.add_business_days(thursday, 0) == thursday
    assert CAL.add_business_days(thursday, 1) == date(2026, 11, 20)
    assert CAL.add_business_days(thursday, 4) == date(2026, 11, 26)  # skips 11/23
    assert CAL.add_business_days(date(2026, 11, 21), 0) == date(2026, 11, 24)  # Sat → Tue
    assert CAL.add_business_days(date(2026, 12, 25), 2) == date(2027, 1, 4)


def test_add_business_days_refuses_negative() -> None:
    with pytest.raises(ValueError):
        CAL.add_business_days(date(2026, 11, 19), -1)


def test_business_days_between() -> None:
    assert CAL.business_days_between(date(2026, 11, 19), date(2026, 11, 26)) == 4
    assert CAL.business_days_between(date(2026, 11, 26), date(2026, 11, 19)) == -4
    assert CAL.business_days_between(date(2026, 12, 28), date(2027, 1, 4)) == 1
    assert CAL.business_days_between(date(2026, 11, 21), date(2026, 11, 21)) == 0


def test_holiday_source_is_injectable() -> None:
    founding_day = date(2026, 11, 25)
    calendar = BusinessCalendar(is_holiday=lambda day: day == founding_day)
    assert not calendar.is_business_day(founding_day)
    assert calendar.is_business_day(date(2026, 11, 23))  # jpholiday not consulted
    assert not calendar.is_business_day(date(2026, 12, 30))  # the closure still applies


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)), st.integers(1, 30))
def test_add_and_between_agree(day: date, n: int) -> None:
    result = CAL.add_business_days(day, n)
    assert CAL.is_business_day(result)
    assert CAL.business_days_between(day, result) == n
    assert CAL.business_days_between(day, result - timedelta(days=1)) == n - 1


SCHEDULE = [date(2026, 12, 8), date(2026, 12, 1), date(2026, 12, 15), date(2026, 12, 1)]


def test_next_registration_date() -> None:
    assert next_registration_date(SCHEDULE, date(2026, 11, 26)) == date(2026, 12, 1)
    assert next_registration_date(SCHEDULE, date(2026, 12, 1)) == date(2026, 12, 1)
    assert next_registration_date(SCHEDULE, date(2026, 12, 2)) == date(2026, 12, 8)
    assert next_registration_date(SCHEDULE, date(2026, 12, 16)) is None
    assert next_registration_date([], date(2026, 12, 1)) is None
