"""Dates in every form of docs/japanese-mail.md#dates parse to themselves; nothing is guessed."""

from __future__ import annotations

import calendar as std_calendar
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.dates import InvalidDate, era_of, ja_date, parse_date

WEEKDAYS_JA = "月火水木金土日"


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("2018/11/01", date(2018, 11, 1)),
        ("2018-11-01", date(2018, 11, 1)),
        ("2018.11.01", date(2018, 11, 1)),
        ("20181101", date(2018, 11, 1)),
        ("2018年11月1日", date(2018, 11, 1)),
        ("2018/11/01(木)", date(2018, 11, 1)),
        ("2018年11月1日（木）", date(2018, 11, 1)),
        ("2018/11/1 (木曜日)", date(2018, 11, 1)),
        ("2018-11-01 (Thu)", date(2018, 11, 1)),
        ("H30.11.1", date(2018, 11, 1)),
        ("h30/11/01", date(2018, 11, 1)),
        ("平成30年11月1日", date(2018, 11, 1)),
        ("㍻30年11月1日", date(2018, 11, 1)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("R6/4/1", date(2024, 4, 1)),
        ("R6.4.1", date(2024, 4, 1)),
        ("R6年4月1日", date(2024, 4, 1)),
        ("S64.1.7", date(1989, 1, 7)),
        ("２０１８／１１／０１（木）", date(2018, 11, 1)),
        ("Ｒ６．４．１", date(2024, 4, 1)),
        ("令和８年１２月１日", date(2026, 12, 1)),
        ("  2026/12/01\u3000", date(2026, 12, 1)),
    ],
)
def test_every_documented_form_parses(typed: str, expected: date) -> None:
    assert parse_date(typed) == expected


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("2018/02/30", "impossible"),
        ("20180230", "impossible"),
        ("2018/13/01", "impossible"),
        ("平成31年5月1日", "outside_era"),
        ("令和1年4月30日", "outside_era"),
        ("S64.1.8", "outside_era"),
        ("H1.1.7", "outside_era"),
        ("R0.5.1", "impossible"),
        ("26/12/1", "two_digit_year"),
        ("2018/11/01(金)", "weekday_mismatch"),
        ("2018/11-01", "format"),
        ("来月1日", "format"),
        ("", "format"),
        ("2018/11/01(Thx)", "format"),
    ],
)
def test_invalid_dates_are_refused_naming_the_value(typed: str, reason: str) -> None:
    with pytest.raises(InvalidDate) as caught:
        parse_date(typed)
    assert caught.value.value == typed
    assert caught.value.reason == reason


def test_era_boundaries() -> None:
    assert parse_date("平成31年4月30日") == date(2019, 4, 30)
    assert parse_date("令和元年5月1日") == date(2019, 5, 1)
    assert parse_date("H1.1.8") == date(1989, 1, 8)
    assert parse_date("S64.1.7") == date(1989, 1, 7)


# --- properties -----------------------------------------------------------------------------


def _era_year(day: date) -> tuple[str, str, str]:
    era = era_of(day)
    number = day.year - era.first_day.year + 1
    return era.name, era.letter, str(number)


def western_slash(d: date) -> str:
    return f"{d.year}/{d.month:02}/{d.day:02}"


def western_dash_unpadded(d: date) -> str:
    return f"{d.year}-{d.month}-{d.day}"


def western_dot(d: date) -> str:
    return f"{d.year}.{d.month:02}.{d.day:02}"


def compact(d: date) -> str:
    return d.strftime("%Y%m%d")


def kanji(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def wareki_letter(d: date) -> str:
    _, letter, number = _era_year(d)
    return f"{letter}{number}.{d.month}.{d.day}"


def wareki_kanji(d: date) -> str:
    name, _, number = _era_year(d)
    return f"{name}{'元' if number == '1' else number}年{d.month}月{d.day}日"


FORMATS: list[Callable[[date], str]] = [
    western_slash,
    western_dash_unpadded,
    western_dot,
    compact,
    kanji,
    wareki_letter,
    wareki_kanji,
]


@given(
    st.dates(min_value=date(1926, 12, 25), max_value=date(2100, 12, 31)),
    st.sampled_from(FORMATS),
    st.booleans(),
    st.sampled_from(["", "({})", "（{}）", " ({}曜日)"]),
)
def test_any_date_in_any_form_parses_back(
    day: date, render: Callable[[date], str], wide: bool, weekday: str
) -> None:
    text = render(day) + weekday.format(WEEKDAYS_JA[day.weekday()])
    assert parse_date(full_width(text) if wide else text) == day


@st.composite
def impossible_days(draw: st.DrawFn) -> tuple[int, int, int]:
    year = draw(st.integers(2020, 2100))
    month = draw(st.integers(1, 12))
    last = std_calendar.monthrange(year, month)[1]
    return year, month, draw(st.integers(last + 1, 99))


@given(impossible_days(), st.sampled_from(["{y}/{m}/{d}", "{y}-{m:02}-{d:02}", "{y}年{m}月{d}日"]))
def test_invalid_day_of_month_never_parses(ymd: tuple[int, int, int], pattern: str) -> None:
    year, month, day = ymd
    text = pattern.format(y=year, m=month, d=day)
    with pytest.raises(InvalidDate):
        parse_date(text)
    with pytest.raises(InvalidDate):
        parse_date(f"R{year - 2018}.{month}.{day}")


def test_dates_are_written_one_way() -> None:
    """Mail, the status page, the PDFs and problem messages all write this, never 12月07日."""
    assert ja_date(date(2026, 12, 7)) == "2026年12月7日（月）"
    assert ja_date(date(2026, 11, 27)) == "2026年11月27日（金）"


@given(st.dates(min_value=date(1989, 1, 8), max_value=date(2100, 12, 31)))
def test_a_written_date_reads_back(day: date) -> None:
    # An applicant who copies a date from a notice into a new request is understood.
    assert parse_date(ja_date(day)) == day
