"""The scheduler's settings, passed in explicitly (nothing here reads the environment).

The entry point builds one :class:`ScheduleConfig` from ``Settings`` (``MAILBOT_APPLY_TIME``,
``MAILBOT_SWEEP_SECONDS``, ``MAILBOT_REMINDER_TIME``, ``MAILBOT_RETENTION_TIME``,
``MAILBOT_SCHEDULER_POLL_SECONDS``) and
hands it to :func:`scheduler.service.run_scheduler`; tests build their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from mailbot.applying import MIDNIGHT
from mailbot.config import Settings


@dataclass(frozen=True)
class ScheduleConfig:
    # When a start date has come: this time of that day in MAILBOT_TIMEZONE.
    apply_time: time = MIDNIGHT
    # The sweep applies whatever is due and reconciles the date jobs with the database. It is
    # what makes applying correct when a date job is lost, so it bounds the delay then.
    sweep_seconds: float = 60.0
    # The review reminder digest goes out at this time of each business day.
    reminder_time: time = time(9, 0)
    # Retention (mailbot.retention) removes the raw bytes that are due at this time each day.
    retention_time: time = time(3, 30)
    # How often a process without the scheduler tries to take it over, and how often the
    # process with it checks that it still holds it. A takeover after the holder dies takes
    # at most this long (PostgreSQL frees a dead session's lock at once).
    leader_poll_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.sweep_seconds <= 0 or self.leader_poll_seconds <= 0:
            raise ValueError("sweep_seconds and leader_poll_seconds must be positive")


def schedule_config(settings: Settings) -> ScheduleConfig:
    """The scheduler's part of the settings (what ``mailbot serve`` passes in)."""
    return ScheduleConfig(
        apply_time=settings.apply_time,
        sweep_seconds=settings.sweep_seconds,
        reminder_time=settings.reminder_time,
        retention_time=settings.retention_time,
        leader_poll_seconds=settings.scheduler_poll_seconds,
    )
