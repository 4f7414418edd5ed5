"""``mailbot schedule jobs``: pending applies, their run times, and whether a date job is set.

Read from the database, not from a running scheduler: it works from any process, whether or
not this one leads. An approved application without a job is normal for up to one sweep after
its approval; a due one is applied by the next sweep even without a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from typing import Any

from sqlmodel import Session

from mailbot.applying import APPLY_JOB_PREFIX, apply_job_id, pending_applies
from scheduler.job_rows import stored_jobs


@dataclass(frozen=True)
class ScheduledApply:
    receipt_no: str
    office_code: str
    start_date: str
    run_at: datetime
    user_ids: int
    due: bool  # the run time has passed: the next sweep (or the job) applies it
    job_run_at: datetime | None  # the date job's stored run time; None: no job (yet)

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt_no": self.receipt_no,
            "office_code": self.office_code,
            "start_date": self.start_date,
            "run_at": self.run_at.isoformat(),
            "user_ids": self.user_ids,
            "due": self.due,
            "job": apply_job_id(self.receipt_no) if self.job_run_at else None,
            "job_run_at": self.job_run_at.isoformat() if self.job_run_at else None,
        }


def list_scheduled(
    session: Session, zone: tzinfo, apply_time: time, now: datetime
) -> tuple[list[ScheduledApply], list[str]]:
    """(pending applies, earliest first; job ids left over for applications not approved)."""
    jobs = stored_jobs(session)
    rows = []
    for pending in pending_applies(session, zone, apply_time):
        stored = jobs.pop(apply_job_id(pending.receipt_no), None)
        rows.append(
            ScheduledApply(
                receipt_no=pending.receipt_no,
                office_code=pending.office_code,
                start_date=pending.start_date.isoformat(),
                run_at=pending.run_at,
                user_ids=pending.user_ids,
                due=pending.run_at <= now,
                job_run_at=(
                    datetime.fromtimestamp(stored, UTC).astimezone(zone) if stored else None
                ),
            )
        )
    stale = sorted(j for j in jobs if j.startswith(APPLY_JOB_PREFIX))
    return rows, stale


def jobs_as_dict(rows: list[ScheduledApply], stale: list[str]) -> dict[str, Any]:
    return {"pending": [r.as_dict() for r in rows], "stale_jobs": stale}


def format_jobs(rows: list[ScheduledApply], stale: list[str]) -> str:
    if not rows and not stale:
        return "(no pending applies)"
    lines = [
        f"{r.receipt_no}  {r.run_at.isoformat(timespec='minutes')}  {r.office_code:<8} "
        f"{r.user_ids:>5} ID(s)  "
        + ("due: next sweep" if r.due else "job set" if r.job_run_at else "job: next sweep")
        for r in rows
    ]
    lines += [f"{job_id}  stale (removed by the next sweep)" for job_id in stale]
    return "\n".join(lines)
