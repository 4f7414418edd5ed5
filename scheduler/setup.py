"""Building the APScheduler 3 scheduler mailbot runs: which stores, which executor, defaults."""

from __future__ import annotations

from datetime import datetime, tzinfo

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, create_engine

from db.dialect import is_sqlite
from db.engine import SQLITE_BUSY_TIMEOUT_MS
from db.models import SchedulerJob
from scheduler.jobs import JobContext, remind, retain
from scheduler.sync import APPLY_STORE, sweep

SWEEP_JOB = "sweep"
REMINDER_JOB = "reminders"
RETENTION_JOB = "retention"


def store_engine(engine: Engine) -> Engine:
    """The job store's own engine on the same database.

    Own, because the store disposes its engine when the scheduler shuts down. On SQLite
    without mailbot's ``BEGIN IMMEDIATE``: the scheduler reads the store from the event loop,
    and a plain (deferred) read under WAL never waits for a writer, so an apply transaction
    in progress cannot stall the loop that also serves SMTP.
    """
    if is_sqlite(engine):
        return create_engine(engine.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    return create_engine(engine.url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def build_scheduler(engine: Engine, zone: tzinfo) -> AsyncIOScheduler:
    """Date jobs persist in mailbot's database (table ``apscheduler_jobs``, created by the
    migrations); the sweep and reminder jobs are rebuilt from the settings at every start and
    live in memory. Sync job functions run in the event loop's thread pool."""
    applies = SQLAlchemyJobStore(engine=store_engine(engine), tablename=SchedulerJob.__tablename__)
    return AsyncIOScheduler(
        jobstores={"default": MemoryJobStore(), APPLY_STORE: applies},
        executors={"default": AsyncIOExecutor()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=zone,
    )


def add_service_jobs(scheduler: AsyncIOScheduler, context: JobContext) -> None:
    zone = context.settings.zone
    config = context.config
    scheduler.add_job(
        sweep,
        IntervalTrigger(seconds=config.sweep_seconds, timezone=zone),
        args=[context, scheduler],
        id=SWEEP_JOB,
        name="apply what is due; reconcile apply jobs",
        next_run_time=datetime.now(zone),  # first run at once: sets the date jobs
        replace_existing=True,
    )
    # Weekdays here; holidays and the year-end closure are skipped inside (BusinessCalendar).
    scheduler.add_job(
        remind,
        CronTrigger(
            day_of_week="mon-fri",
            hour=config.reminder_time.hour,
            minute=config.reminder_time.minute,
            timezone=zone,
        ),
        args=[context],
        id=REMINDER_JOB,
        name="review reminder digests",
        replace_existing=True,
        # A loop busy at 09:00 still sends them; a day missed while down is caught up at start.
        misfire_grace_time=None,
    )
    scheduler.add_job(
        retain,
        CronTrigger(
            hour=config.retention_time.hour, minute=config.retention_time.minute, timezone=zone
        ),
        args=[context],
        id=RETENTION_JOB,
        name="remove raw mail past its retention",
        replace_existing=True,
        misfire_grace_time=None,
    )
