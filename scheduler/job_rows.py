"""The scheduler's rows in mailbot's database (table ``apscheduler_jobs``, APScheduler's
SQLAlchemy job store), as mailbot's own transactions read and change them.

Only the scheduler touches these rows, through here: what jobs are stored, for the sweep and
``mailbot schedule jobs``; and removing an application's date job in the transaction that
cancels the application (the scheduler runs in another process; had the row stayed, applying
would still skip a cancelled application and the next sweep would drop the job).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlmodel import Session, col

from db.models import SchedulerJob
from mailbot.applying import apply_job_id


def stored_jobs(session: Session) -> dict[str, float | None]:
    """Every stored job: its id and its next run time (a POSIX timestamp; None: paused)."""
    query = select(col(SchedulerJob.id), col(SchedulerJob.next_run_time))
    return {job_id: next_run for job_id, next_run in session.execute(query)}


def remove_apply_job(session: Session, receipt_no: str) -> None:
    """Remove the date job of ``receipt_no``, if it has one, in the caller's transaction."""
    session.execute(delete(SchedulerJob).where(col(SchedulerJob.id) == apply_job_id(receipt_no)))
