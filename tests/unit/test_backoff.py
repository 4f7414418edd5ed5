"""next_attempt() and RetryPolicy: exponential backoff for outbox retries, at most an hour
apart, given up after MAILBOT_OUTBOX_GIVE_UP_HOURS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from db.models import OutboundMessage
from mailbot.config import load_settings
from mailbot.outbox import MAX_BACKOFF, RetryPolicy, next_attempt

NOW = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


def test_doubles_from_the_base_delay() -> None:
    delays = [next_attempt(NOW, attempts, 30.0) - NOW for attempts in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]


def test_capped_at_an_hour() -> None:
    assert timedelta(hours=1) == MAX_BACKOFF
    assert next_attempt(NOW, 7, 30.0) == NOW + timedelta(seconds=1920)
    assert next_attempt(NOW, 8, 30.0) == NOW + MAX_BACKOFF
    assert next_attempt(NOW, 20, 30.0) == NOW + MAX_BACKOFF


def test_a_lower_cap_from_the_settings() -> None:
    policy = RetryPolicy.from_settings(load_settings(outbox_max_backoff_seconds=600))
    assert policy.next_attempt(NOW, 20) == NOW + timedelta(minutes=10)


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


def notice(created: datetime, attempts: int, requeued: datetime | None = None) -> OutboundMessage:
    return OutboundMessage(
        created_at=created,
        kind="receipt_complete",
        dedupe_key="k",
        recipient="a@example.jp",
        message_id="<m@x>",
        attempts=attempts,
        requeued_at=requeued,
    )


def test_the_defaults_retry_for_five_days_then_give_up() -> None:
    policy = RetryPolicy.from_settings(load_settings())
    assert policy.give_up_after == timedelta(hours=120) and policy.max_attempts is None
    queued = NOW - timedelta(hours=120)
    # 200 attempts are no reason to stop; the time since it was queued is.
    assert not policy.gives_up(notice(queued + timedelta(seconds=1), 200), NOW)
    assert policy.gives_up(notice(queued, 3), NOW)


def test_the_give_up_time_runs_from_an_operator_s_retry() -> None:
    policy = RetryPolicy.from_settings(load_settings(outbox_give_up_hours=2))
    long_ago = NOW - timedelta(days=30)
    assert policy.gives_up(notice(long_ago, 1), NOW)
    assert not policy.gives_up(notice(long_ago, 1, requeued=NOW - timedelta(hours=1)), NOW)


def test_max_attempts_still_ends_it_sooner_when_set() -> None:
    policy = RetryPolicy.from_settings(load_settings(outbox_max_attempts=3))
    assert not policy.gives_up(notice(NOW, 2), NOW)
    assert policy.gives_up(notice(NOW, 3), NOW)


def test_an_hour_apart_at_most_means_a_relay_back_from_two_days_away_is_tried_within_the_hour() -> (
    None
):
    policy = RetryPolicy.from_settings(load_settings())
    moment, attempts = NOW, 0
    while moment < NOW + timedelta(days=2):
        attempts += 1
        following = policy.next_attempt(moment, attempts)
        assert following - moment <= timedelta(hours=1)
        moment = following
    assert not policy.gives_up(notice(NOW, attempts), moment)
