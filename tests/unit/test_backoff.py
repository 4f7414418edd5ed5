"""next_attempt(): exponential backoff for outbox retries, capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mailbot.outbox import MAX_BACKOFF, next_attempt

NOW = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


def test_doubles_from_the_base_delay() -> None:
    delays = [next_attempt(NOW, attempts, 30.0) - NOW for attempts in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]


def test_capped_at_six_hours() -> None:
    assert timedelta(hours=6) == MAX_BACKOFF
    assert next_attempt(NOW, 20, 30.0) == NOW + MAX_BACKOFF


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert next_attempt(NOW, 10_000, 30.0) == NOW + MAX_BACKOFF


def test_zero_attempts_counts_as_the_first() -> None:
    assert next_attempt(NOW, 0, 30.0) == NOW + timedelta(seconds=30)


def test_keeps_the_time_zone_of_now() -> None:
    assert next_attempt(NOW, 1, 1.0).tzinfo is UTC


@given(
    attempts=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.001, max_value=3600.0),
)
def test_never_earlier_than_the_last_and_never_past_the_cap(attempts: int, base: float) -> None:
    this = next_attempt(NOW, attempts, base)
    following = next_attempt(NOW, attempts + 1, base)
    assert NOW < this <= following <= NOW + MAX_BACKOFF
