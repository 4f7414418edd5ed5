"""Keeping the date jobs in line with the database.

Approvals happen in other processes (the CLI, any worker), so nobody calls the scheduler when
one is given; the sweep reconciles instead: a job for every approved application whose run
time is still ahead, at that run time; no job for an application that is no longer approved.
The plan is a pure function of the two sides; :func:`sync_apply_jobs` carries it out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import TYPE_CHECKING

from apscheduler.jobstores.base import JobLookupError
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import select
from sqlmodel import col

from db.engine import session_scope
from db.models import APPROVED, Application
from mailbot.applying import APPLY_JOB_PREFIX, apply_job_id, run_time
from scheduler.job_rows import stored_jobs
from scheduler.jobs import APPLY_JOB_FUNCTION, JobContext, run_apply

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

log = logging.getLogger(__name__)

APPLY_STORE = "applies"
# Stored run times are float timestamps; anything closer than this is the same time.
SAME_TIME_SECONDS = 0.5


@dataclass(frozen=True)
class SyncPlan:
    add: dict[str, datetime] = field(default_factory=dict)  # job id -> run time (new or moved)
    remove: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def plan_sync(
    approved: Mapping[str, date],
    jobs: Mapping[str, float | None],
    now: datetime,
    zone: tzinfo,
    apply_time: time,
) -> SyncPlan:
    """``approved``: receipt number -> start date; ``jobs``: job id -> stored run timestamp.

    A due application gets no new job (the sweep that called this just applied what is due,
    or will retry it); an existing job of a due one is left alone to fire.
    """
    plan = SyncPlan()
    for receipt_no, start in approved.items():
        at = run_time(start, zone, apply_time)
        job_id = apply_job_id(receipt_no)
        if at <= now:
            continue
        stored = jobs.get(job_id)
        if stored is None or abs(stored - at.timestamp()) > SAME_TIME_SECONDS:
            plan.add[job_id] = at
    wanted = {apply_job_id(receipt_no) for receipt_no in approved}
    plan.remove.extend(
        sorted(j for j in jobs if j.startswith(APPLY_JOB_PREFIX) and j not in wanted)
    )
    return plan


def sweep(context: JobContext, scheduler: BaseScheduler) -> None:
    """The periodic job: apply what is due, then bring the date jobs in line."""
    run_apply(context, via="sweep")
    sync_apply_jobs(scheduler, context)


def read_sides(context: JobContext) -> tuple[dict[str, date], dict[str, float | None]]:
    with session_scope(context.engine) as session:
        approved = {
            receipt_no: start
            for receipt_no, start in session.execute(
                select(col(Application.receipt_no), col(Application.start_date)).where(
                    col(Application.status) == APPROVED, col(Application.start_date).is_not(None)
                )
            )
        }
        jobs = stored_jobs(session)
    return approved, jobs


def sync_apply_jobs(scheduler: BaseScheduler, context: JobContext) -> SyncPlan:
    approved, jobs = read_sides(context)
    zone = context.settings.zone
    plan = plan_sync(approved, jobs, context.clock(), zone, context.config.apply_time)
    for job_id, at in plan.add.items():
        add_apply_job(scheduler, job_id.removeprefix(APPLY_JOB_PREFIX), at, zone)
    for job_id in plan.remove:
        with contextlib.suppress(JobLookupError):  # fired or removed meanwhile
            scheduler.remove_job(job_id, jobstore=APPLY_STORE)
    if plan:
        log.info("scheduler: %d apply job(s) set, %d removed", len(plan.add), len(plan.remove))
    return plan


def add_apply_job(scheduler: BaseScheduler, receipt_no: str, at: datetime, zone: tzinfo) -> None:
    """The date job of one application: stable id, replaced if it exists, never too late."""
    scheduler.add_job(
        APPLY_JOB_FUNCTION,
        trigger=DateTrigger(run_date=at, timezone=zone),
        id=apply_job_id(receipt_no),
        name=f"apply {receipt_no}",
        kwargs={"receipt_no": receipt_no},
        jobstore=APPLY_STORE,
        replace_existing=True,
        misfire_grace_time=None,  # however late (mailbot was down): run, do not skip
        coalesce=True,
    )
