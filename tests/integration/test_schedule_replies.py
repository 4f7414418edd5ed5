"""Help and problem replies name the next registration dates, the earliest allowed marked,
on a fixed clock: an ordinary Friday, before a holiday, and across the year-end closure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.harness import Harness, body_text
from tests.support.requests import form, mail

EARLIEST = "　← 本日お申込みの場合の最短の利用開始日"
TOO_SOON = "　（本日のお申込みでは指定できません）"


def help_text(harness: Harness) -> str:
    (reply,) = harness.round_trip(mail("x", subject="ヘルプ"))
    return body_text(reply).split("[English]")[0]


@pytest.mark.parametrize(
    ("now", "too_soon", "earliest"),
    [
        # Friday 11/27: four business days end Thursday 12/3.
        (datetime(2026, 11, 27, 1, 0, tzinfo=UTC), ["2026年12月1日（火）"], "2026年12月8日（火）"),
        # Thursday 11/19 before 勤労感謝の日 (Mon 11/23): 11/20, 24, 25, 26 → 12/1 is allowed.
        (datetime(2026, 11, 19, 1, 0, tzinfo=UTC), [], "2026年12月1日（火）"),
        # Friday 12/25 evening in Tokyo: 12/28, then the closure, 1/4, 1/5, 1/6 → 1/12.
        (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), [], "2027年1月12日（火）"),
        # Monday 12/28 at 23:30 in Tokyo is still 12/28 there (14:30 UTC): 1/4..1/7 → 1/12.
        (datetime(2026, 12, 28, 14, 30, tzinfo=UTC), [], "2027年1月12日（火）"),
        # 12/28 at 15:30 UTC is 12/29 00:30 in Tokyo: closed; still 1/7, so still 1/12.
        (datetime(2026, 12, 28, 15, 30, tzinfo=UTC), [], "2027年1月12日（火）"),
    ],
)
def test_help_marks_the_earliest_registration_date(
    harness: Harness, now: datetime, too_soon: list[str], earliest: str
) -> None:
    harness.now = now
    text = help_text(harness)
    for day in too_soon:
        assert f"  {day}{TOO_SOON}\n" in text
    assert f"  {earliest}{EARLIEST}\n" in text
    assert text.count(EARLIEST) == 1
    listed = [line for line in text.splitlines() if line.startswith("  20") and "日（" in line]
    assert 0 < len(listed) <= 6


def test_help_gives_examples_of_a_reason(harness: Harness) -> None:
    text = help_text(harness)
    assert "【変更する理由の記載例】" in text
    assert "・担当者の退職により、利用者IDが不要となったため" in text
    assert "契約内容確認" in text  # where to get the pre-filled form


def test_problem_reply_on_a_closure_day_marks_the_january_date(harness: Harness) -> None:
    harness.now = datetime(2026, 12, 30, 1, 0, tzinfo=UTC)
    (reply,) = harness.round_trip(mail(form("9ZZZZ999", start="2027年1月5日")))
    text = body_text(reply).split("[English]")[0]
    assert "『2027年1月5日（火）』は審査に必要な期間が取れません" in text
    assert f"  2027年1月12日（火）{EARLIEST}\n" in text
    english = body_text(reply).split("[English]")[1]
    assert "2027-01-12 <- the earliest a request sent today can get" in english
