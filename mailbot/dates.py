"""Parse the dates Japanese applicants type, western or 和暦, never guessing.

Accepted (after NFKC, so full-width digits and ／．－（） work too, and ㍻/㋿ become 平成/令和):

* ``2018/11/01`` ``2018-11-01`` ``2018.11.01`` ``20181101`` ``2018年11月1日``
* ``H30.11.1`` ``R6/4/1`` ``S64.1.7`` ``平成30年11月1日`` ``令和元年5月1日`` (元 = year 1),
  and the mixes people write (``R6年4月1日``, ``令和6/4/1``)
* any of them followed by a weekday: ``(木)`` ``（木曜日）`` ``(Thu)``.

Written back one way only, everywhere mailbot writes a date in Japanese (mail, the status
page, the PDFs, problem messages): :func:`ja_date`, ``2026年12月7日（月）``.

Refused, with :class:`InvalidDate` naming the text: impossible dates (2018/02/30), 和暦 dates
outside their era (平成31年5月1日, 令和1年4月30日), two-digit western years (26/12/1: 2026 or
1926?), and a weekday that contradicts the date (which of the two did the sender mean?).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from mailbot.normalize import nfkc

InvalidDateReason = Literal[
    "format", "impossible", "outside_era", "two_digit_year", "weekday_mismatch"
]


class InvalidDate(ValueError):
    """``value`` is the text as typed; ``reason`` says why, so replies can say how to fix it."""

    def __init__(self, value: str, reason: InvalidDateReason) -> None:
        self.value = value
        self.reason: InvalidDateReason = reason
        super().__init__(f"invalid date ({reason}): {value!r}")


@dataclass(frozen=True)
class Era:
    name: str
    letter: str
    first_day: date
    last_day: date | None  # None: the current era

    def gregorian_year(self, era_year: int) -> int:
        return self.first_day.year + era_year - 1

    def contains(self, day: date) -> bool:
        return self.first_day <= day and (self.last_day is None or day <= self.last_day)


ERAS = (
    Era("令和", "R", date(2019, 5, 1), None),
    Era("平成", "H", date(1989, 1, 8), date(2019, 4, 30)),
    Era("昭和", "S", date(1926, 12, 25), date(1989, 1, 7)),
)
_ERA_BY_KEY = {key: era for era in ERAS for key in (era.name, era.letter)}

_WEEKDAYS_JA = "月火水木金土日"
_WEEKDAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_SUFFIX = re.compile(
    r"\s*\(\s*(?P<wd>[月火水木金土日](?:曜日?)?|[A-Za-z]{3,9}\.?)\s*\)\s*$", re.ASCII
)

# Month and day parts shared by every pattern; "sep" must be the same both times (2018/11-01
# is more likely a typo than a format).
_MD_SEP = r"(?P<sep>[/\-.])\s*(?P<m>\d{1,2})\s*(?P=sep)\s*(?P<d>\d{1,2})"
_MD_KANJI = r"年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
_WESTERN = (
    re.compile(rf"(?P<y>\d{{4}})\s*{_MD_SEP}", re.ASCII),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})", re.ASCII),
    re.compile(rf"(?P<y>\d{{4}})\s*{_MD_KANJI}", re.ASCII),
)
_ERA_KEY = r"(?P<era>令和|平成|昭和|[RHSrhs])\s*(?P<y>\d{1,2}|元)\s*"
_JAPANESE = (re.compile(_ERA_KEY + _MD_SEP, re.ASCII), re.compile(_ERA_KEY + _MD_KANJI, re.ASCII))
_TWO_DIGIT_YEAR = re.compile(rf"\d{{2}}\s*{_MD_SEP}", re.ASCII)


def parse_date(text: str) -> date:
    """Parse one date in any accepted form; raise :class:`InvalidDate` otherwise."""
    body, weekday = _split_weekday(nfkc(text).strip())
    result = _parse_body(text, body)
    if weekday is not None and weekday != result.weekday():
        raise InvalidDate(text, "weekday_mismatch")
    return result


def _split_weekday(text: str) -> tuple[str, int | None]:
    """Remove a trailing ``(木)``; return the rest and the weekday (Monday = 0) if one was given.

    An unrecognised three-letter word in brackets stays in the text, which then fails to parse.
    """
    match = _WEEKDAY_SUFFIX.search(text)
    if match is None:
        return text, None
    word = match.group("wd")
    if word[0] in _WEEKDAYS_JA:
        return text[: match.start()], _WEEKDAYS_JA.index(word[0])
    english = word.rstrip(".").lower()
    for number, name in enumerate(_WEEKDAYS_EN):
        if english in (name, name[:3]):
            return text[: match.start()], number
    return text, None


def _parse_body(original: str, body: str) -> date:
    for pattern in _WESTERN:
        match = pattern.fullmatch(body)
        if match:
            return _make_date(original, int(match["y"]), int(match["m"]), int(match["d"]))
    for pattern in _JAPANESE:
        match = pattern.fullmatch(body)
        if match:
            return _make_era_date(
                original, match["era"], match["y"], int(match["m"]), int(match["d"])
            )
    if _TWO_DIGIT_YEAR.fullmatch(body):
        raise InvalidDate(original, "two_digit_year")
    raise InvalidDate(original, "format")


def _make_date(original: str, year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise InvalidDate(original, "impossible") from None


def _make_era_date(original: str, era_key: str, era_year: str, month: int, day: int) -> date:
    era = _ERA_BY_KEY[era_key.upper()] if len(era_key) == 1 else _ERA_BY_KEY[era_key]
    number = 1 if era_year == "元" else int(era_year)
    if number < 1:
        raise InvalidDate(original, "impossible")
    result = _make_date(original, era.gregorian_year(number), month, day)
    if not era.contains(result):
        raise InvalidDate(original, "outside_era")
    return result


def era_of(day: date) -> Era:
    """The era a date falls in (for writing dates back in 和暦); ValueError before Showa."""
    for era in ERAS:
        if era.contains(day):
            return era
    raise ValueError(f"{day} is before the eras this module knows")


def ja_date(day: date) -> str:
    """The one way mailbot writes a date in Japanese text: ``2026年12月7日（月）``."""
    return f"{day.year}年{day.month}月{day.day}日（{_WEEKDAYS_JA[day.weekday()]}）"
