"""The pure scheduling logic: when a start date has come (in Tokyo, whatever the host's zone),
what the sync changes, when reminders are due, and the leader lock's key and file lock."""

from __future__ import annotations

import time as host_time
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from mailbot.applying import (
    AppliedApplication,
    ApplyReport,
    apply_job_id,
    format_report,
    is_due,
    last_due_date,
    run_time,
)
from mailbot.calendar import BusinessCalendar
from mailbot.config import load_settings
from mailbot.errors import ConfigError
from mailbot.reminders import overdue_cutoff, reminder_dedupe_key, reminders_due
from scheduler.config import ScheduleConfig, schedule_config
from scheduler.leader import FileLeaderLock, advisory_key
from scheduler.sync import plan_sync

TOKYO = ZoneInfo("Asia/Tokyo")
START = date(2026, 12, 15)
TOKYO_MIDNIGHT = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)  # 2026-12-15 00:00 in Tokyo
MIDNIGHT = time(0, 0)


@pytest.fixture
def new_york_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's own zone is New York for the test (TZ + tzset), restored afterwards."""
    monkeypatch.setenv("TZ", "America/New_York")
    host_time.tzset()
    assert host_time.localtime(TOKYO_MIDNIGHT.timestamp()).tm_hour == 10  # 10:00 in New York
    yield
    monkeypatch.undo()
    host_time.tzset()


# --- when a start date has come -----------------------------------------------------------------


def test_a_start_date_comes_at_tokyo_midnight() -> None:
    assert run_time(START, TOKYO) == TOKYO_MIDNIGHT
    assert last_due_date(TOKYO_MIDNIGHT - timedelta(microseconds=1), TOKYO) == START - timedelta(
        days=1
    )
    assert last_due_date(TOKYO_MIDNIGHT, TOKYO) == START
    assert not is_due(START, TOKYO_MIDNIGHT - timedelta(seconds=1), TOKYO)
    assert is_due(START, TOKYO_MIDNIGHT, TOKYO)
    assert is_due(START - timedelta(days=30), TOKYO_MIDNIGHT, TOKYO)  # missed ones stay due


def test_the_apply_time_moves_it() -> None:
    half_past_nine = time(9, 30)
    at = TOKYO_MIDNIGHT + timedelta(hours=9, minutes=30)
    assert run_time(START, TOKYO, half_past_nine) == at
    assert not is_due(START, at - timedelta(seconds=1), TOKYO, half_past_nine)
    assert is_due(START, at, TOKYO, half_past_nine)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        last_due_date(datetime(2026, 12, 15), TOKYO)


def test_the_hosts_zone_does_not_matter(new_york_host: None) -> None:
    assert not is_due(START, TOKYO_MIDNIGHT - timedelta(seconds=1), TOKYO)
    assert is_due(START, TOKYO_MIDNIGHT, TOKYO)
    # What APScheduler makes of the job's trigger: the same instant, not New York's midnight.
    trigger = DateTrigger(run_date=run_time(START, TOKYO), timezone=TOKYO)
    assert trigger.get_next_fire_time(None, TOKYO_MIDNIGHT - timedelta(days=1)) == TOKYO_MIDNIGHT
    reminders = CronTrigger(day_of_week="mon-fri", hour=9, minute=0, timezone=TOKYO)
    fire = reminders.get_next_fire_time(None, TOKYO_MIDNIGHT)
    assert fire == TOKYO_MIDNIGHT + timedelta(hours=9)


def test_job_ids_are_stable() -> None:
    assert apply_job_id("260001A") == "apply:260001A"


# --- the sync plan -----------------------------------------------------------------------------


def test_plan_sync_adds_moves_keeps_and_removes() -> None:
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    approved = {
        "260001A": START,  # no job yet
        "260002A": START,  # job at the right time
        "260003A": START,  # job at an old time (the date changed)
        "260004A": date(2026, 11, 30),  # due already: the sweep applies it, no new job
    }
    jobs: dict[str, float | None] = {
        apply_job_id("260002A"): TOKYO_MIDNIGHT.timestamp(),
        apply_job_id("260003A"): (TOKYO_MIDNIGHT - timedelta(days=7)).timestamp(),
        apply_job_id("260004A"): (TOKYO_MIDNIGHT - timedelta(days=15)).timestamp(),
        apply_job_id("260009A"): TOKYO_MIDNIGHT.timestamp(),  # cancelled meanwhile
        "reminders": None,  # not ours to touch
    }
    plan = plan_sync(approved, jobs, now, TOKYO, MIDNIGHT)
    assert plan.add == {
        apply_job_id("260001A"): TOKYO_MIDNIGHT,
        apply_job_id("260003A"): TOKYO_MIDNIGHT,
    }
    assert plan.remove == [apply_job_id("260009A")]
    assert not plan_sync({}, {}, now, TOKYO, MIDNIGHT)


# --- reminders ---------------------------------------------------------------------------------


def test_overdue_means_more_than_one_business_day() -> None:
    calendar = BusinessCalendar()
    friday = date(2026, 11, 27)
    assert overdue_cutoff(calendar, date(2026, 11, 30)) < friday  # Monday: not yet
    assert overdue_cutoff(calendar, date(2026, 12, 1)) == date(2026, 11, 29)  # Tuesday: yes
    # Received on 12/28, the last business day of the year: overdue on the second business
    # day after the closure (12/29–1/3), Tuesday 1/5.
    assert overdue_cutoff(calendar, date(2027, 1, 4)) < date(2026, 12, 28)
    assert overdue_cutoff(calendar, date(2027, 1, 5)) >= date(2026, 12, 28)


def test_reminders_are_due_on_business_days_from_their_time() -> None:
    calendar = BusinessCalendar()
    nine = time(9, 0)
    tuesday_nine = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert reminders_due(tuesday_nine, TOKYO, nine, calendar)
    assert not reminders_due(tuesday_nine - timedelta(minutes=1), TOKYO, nine, calendar)
    assert not reminders_due(tuesday_nine + timedelta(days=4), TOKYO, nine, calendar)  # Saturday
    assert not reminders_due(datetime(2026, 12, 30, 3, 0, tzinfo=UTC), TOKYO, nine, calendar)
    assert reminder_dedupe_key(date(2026, 12, 1), "a@b") == "reminder:2026-12-01:a@b"


# --- settings, report, lock --------------------------------------------------------------------


def test_clock_times_and_config(tmp_path: Path) -> None:
    # The scheduler's times are the MAILBOT_*_TIME settings (mailbot serve --only scheduler).
    settings = load_settings(home=tmp_path, apply_time="00:00", reminder_time="09:30")
    assert schedule_config(settings).apply_time == MIDNIGHT
    assert schedule_config(settings).reminder_time == time(9, 30)
    for bad in ("9am", "25:00", "09:00+09:00"):
        with pytest.raises(ConfigError, match="MAILBOT_APPLY_TIME"):
            load_settings(home=tmp_path, apply_time=bad)
    with pytest.raises(ValueError, match="positive"):
        ScheduleConfig(sweep_seconds=0)


def test_the_report_text() -> None:
    report = ApplyReport(now=TOKYO_MIDNIGHT, through=START, dry_run=True)
    report.applied.append(
        AppliedApplication(
            receipt_no="260001A",
            office_code="TYO01",
            start_date=START,
            user_ids=("1ANACA0A", "1ANACA0B"),
            already_abolished=(),
            user_codes=("1ANAC",),
            codes_still_active=(),
        )
    )
    assert format_report(report) == (
        "would apply 1 application(s), 2 user ID(s), start dates through 2026-12-15\n"
        "  260001A  2026-12-15  TYO01  2 ID(s): 1ANACA0A, 1ANACA0B; codes 1ANAC"
    )


def test_advisory_keys_are_per_schema_and_fit_a_bigint() -> None:
    keys = {advisory_key(schema) for schema in ("public", "mailbot", "t_0123456789ab")}
    assert len(keys) == 3
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert advisory_key("public") == advisory_key("public")


def test_the_file_lock_admits_one_holder(tmp_path: Path) -> None:
    path = tmp_path / "mailbot.db.scheduler-lock"
    first, second = FileLeaderLock(path), FileLeaderLock(path)
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()
    first.release()
    assert not first.still_held()
    assert second.try_acquire()
    second.release()
