"""The next registration dates and the earliest one a request sent today can get, on fixed
days around holiday weeks and the year-end closure (12/29–1/3)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mailbot.calendar import BusinessCalendar
from mailbot.rules import rule5_start_date
from mailbot.upcoming import upcoming

CAL = BusinessCalendar()


def tuesdays(first: date, count: int) -> list[date]:
    return [first + timedelta(weeks=n) for n in range(count)]


@pytest.mark.parametrize(
    ("today", "schedule", "earliest_start", "earliest"),
    [
        # An ordinary week: Friday → Thursday; the Tuesday before is too soon.
        (date(2026, 11, 27), tuesdays(date(2026, 12, 1), 8), date(2026, 12, 3), date(2026, 12, 8)),
        # 勤労感謝の日 (Mon 11/23): from Thursday 11/19 the four are 11/20, 24, 25, 26.
        (
            date(2026, 11, 19),
            [date(2026, 11, 24), date(2026, 11, 26), date(2026, 12, 1)],
            date(2026, 11, 26),
            date(2026, 11, 26),
        ),
        # Silver week 2026 (9/21 敬老の日, 9/22 国民の休日, 9/23 秋分の日): Friday 9/18 → 9/29.
        (date(2026, 9, 18), tuesdays(date(2026, 9, 22), 6), date(2026, 9, 29), date(2026, 9, 29)),
        # Golden Week 2027 (4/29, 5/3, 5/4, 5/5): Wednesday 4/28 → 4/30, 5/6, 5/7, 5/10.
        (date(2027, 4, 28), tuesdays(date(2027, 5, 4), 6), date(2027, 5, 10), date(2027, 5, 11)),
        # Year-end: Friday 12/25 → 12/28, then 1/4, 1/5, 1/6 (12/29–1/3 closed).
        (
            date(2026, 12, 25),
            [date(2026, 12, 28), date(2027, 1, 5), date(2027, 1, 6), date(2027, 1, 12)],
            date(2027, 1, 6),
            date(2027, 1, 6),
        ),
        # Monday 12/28, the last business day of the year → 1/7.
        (date(2026, 12, 28), tuesdays(date(2027, 1, 5), 6), date(2027, 1, 7), date(2027, 1, 12)),
        # A closure day (12/30), and 1/2 (a Saturday inside it): counting starts on 1/4.
        (date(2026, 12, 30), tuesdays(date(2027, 1, 5), 6), date(2027, 1, 7), date(2027, 1, 12)),
        (date(2027, 1, 2), tuesdays(date(2027, 1, 5), 6), date(2027, 1, 7), date(2027, 1, 12)),
        # Monday 1/4, the first business day → 1/8 (Friday): the Tuesday after.
        (date(2027, 1, 4), tuesdays(date(2027, 1, 5), 6), date(2027, 1, 8), date(2027, 1, 12)),
    ],
)
def test_the_earliest_date_is_the_lead_in_business_days(
    today: date, schedule: list[date], earliest_start: date, earliest: date
) -> None:
    result = upcoming(schedule, CAL, today, 4)
    assert result.earliest_start == earliest_start
    assert result.earliest_registration == earliest
    marked = [entry.day for entry in result.dates if entry.earliest]
    assert marked == [earliest]
    for entry in result.dates:
        assert entry.too_soon == (entry.day < earliest_start)
        # The mark agrees with what rule 5 accepts for a request sent today.
        accepted = rule5_start_date(entry.day, schedule, CAL, today, 4)
        assert (accepted == entry.day) == (not entry.too_soon)


def test_six_dates_from_today_on_past_ones_left_out() -> None:
    schedule = tuesdays(date(2026, 11, 3), 12)
    result = upcoming(schedule, CAL, date(2026, 11, 27), 4)
    assert [entry.day for entry in result.dates] == tuesdays(date(2026, 12, 1), 6)


def test_a_registration_date_today_is_listed_as_too_soon() -> None:
    result = upcoming([date(2026, 12, 1), date(2026, 12, 8)], CAL, date(2026, 12, 1), 4)
    assert [(e.day, e.too_soon, e.earliest) for e in result.dates] == [
        (date(2026, 12, 1), True, False),
        (date(2026, 12, 8), False, True),
    ]


def test_earliest_beyond_the_six_listed_is_still_named() -> None:
    daily = [date(2026, 11, 27) + timedelta(days=n) for n in range(20)]
    result = upcoming(daily, CAL, date(2026, 11, 27), 4)
    assert all(entry.too_soon for entry in result.dates)
    assert result.earliest_registration == date(2026, 12, 3)


def test_schedule_ending_before_the_earliest_start_names_none() -> None:
    result = upcoming([date(2026, 12, 1)], CAL, date(2026, 11, 27), 4)
    assert result.earliest_registration is None
    assert [entry.too_soon for entry in result.dates] == [True]


def test_a_lead_of_zero_allows_today_on_a_business_day() -> None:
    result = upcoming([date(2026, 12, 1)], CAL, date(2026, 12, 1), 0)
    assert result.earliest_registration == date(2026, 12, 1)
