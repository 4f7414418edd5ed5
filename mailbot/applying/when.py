"""When an application is due: its start date's apply time in MAILBOT_TIMEZONE, and the
scheduler's job id for it (docs/domain.md, "The schedule")."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

MIDNIGHT = time(0, 0)
APPLY_JOB_PREFIX = "apply:"


def apply_job_id(receipt_no: str) -> str:
    """The scheduler's stable job id for an application (``apply:260001A``)."""
    return APPLY_JOB_PREFIX + receipt_no


def run_time(start_date: date, zone: tzinfo, apply_time: time = MIDNIGHT) -> datetime:
    """The moment an application with ``start_date`` is due: apply time of that day in ``zone``."""
    return datetime.combine(start_date, apply_time, tzinfo=zone)


def last_due_date(now: datetime, zone: tzinfo, apply_time: time = MIDNIGHT) -> date:
    """The latest start date that is due at ``now``: every start date up to it has come."""
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(zone).date()
    return today if run_time(today, zone, apply_time) <= now else today - timedelta(days=1)


def is_due(start_date: date, now: datetime, zone: tzinfo, apply_time: time = MIDNIGHT) -> bool:
    return start_date <= last_due_date(now, zone, apply_time)
