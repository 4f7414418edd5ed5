"""What the scheduler runs. Every job only triggers work the database then decides.

Date jobs live in the SQLAlchemy job store, which keeps a reference to the function and its
(picklable) arguments, so :func:`apply_job` must be importable by name and cannot be handed an
engine. The leading process binds its :class:`JobContext` here before the scheduler starts
and unbinds it when it stops; a date job fired outside that window fails loudly instead of
guessing a database. The sweep and the reminders live in the memory job store and get their
context as an argument.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from db.engine import session_scope
from mailbot.applying import ApplyReport, apply_due
from mailbot.calendar import BusinessCalendar
from mailbot.clock import Clock, utc_now
from mailbot.config import Settings
from mailbot.reminders import reminders_due, send_review_reminders
from mailbot.retention import PurgeReport, RetentionPolicy, purge
from scheduler.config import ScheduleConfig

log = logging.getLogger(__name__)

APPLY_JOB_FUNCTION = "scheduler.jobs:apply_job"


@dataclass(frozen=True)
class JobContext:
    engine: Engine
    settings: Settings
    config: ScheduleConfig
    calendar: BusinessCalendar
    clock: Clock = utc_now


_bound: JobContext | None = None
_bound_lock = threading.Lock()


def bind(context: JobContext) -> None:
    global _bound
    with _bound_lock:
        _bound = context


def unbind() -> None:
    global _bound
    with _bound_lock:
        _bound = None


def bound_context() -> JobContext:
    with _bound_lock:
        context = _bound
    if context is None:
        raise RuntimeError("no scheduler is running in this process (scheduler.jobs.bind)")
    return context


# --- the jobs --------------------------------------------------------------------------------


def apply_job(receipt_no: str) -> None:
    """The date job of ``apply:RECEIPT_NO``: apply whatever is due (this one among them).

    Every application has its own date job, so a start date with 10,000 applications fires
    10,000 jobs at once. Run side by side they fought over the same rows (each claim skipping
    the others' locks) and the day took minutes on PostgreSQL (bench/apply.py). So one job at
    a time in this process applies, and a job that fires meanwhile only asks it to look once
    more when done (what came due since it began): the 10,000 jobs make two or three runs.
    """
    context = bound_context()
    if not _APPLY_RUNS.request():
        return  # the run going on looks again for this job when it is done
    try:
        while _APPLY_RUNS.next_run():
            run_apply(context, via=f"job:{receipt_no}")
    except BaseException:
        _APPLY_RUNS.done()  # the next job (or the sweep) tries again
        raise


class _Coalescing:
    """Requests to run, served by one runner at a time; requests that arrive while it runs
    make it run once more (not once each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._running = False

    def request(self) -> bool:
        """Ask for a run; True when the caller is to be the runner."""
        with self._lock:
            self._requested = True
            if self._running:
                return False
            self._running = True
            return True

    def next_run(self) -> bool:
        """For the runner: True to run (again), False when no request came since the last run
        (the runner is done). A runner that raises must call :meth:`done`."""
        with self._lock:
            if not self._requested:
                self._running = False
                return False
            self._requested = False
            return True

    def done(self) -> None:
        with self._lock:
            self._running = False


_APPLY_RUNS = _Coalescing()


def run_apply(context: JobContext, *, via: str) -> ApplyReport:
    return apply_due(
        context.engine,
        context.settings,
        context.clock(),
        apply_time=context.config.apply_time,
        via=via,
    )


def remind(context: JobContext) -> int:
    """Queue today's review reminder digests, if today is a business day."""
    now = context.clock()
    with session_scope(context.engine) as session:
        queued = send_review_reminders(session, context.settings, context.calendar, now)
    if queued:
        log.info("reminders: %d digest(s) queued", queued)
    return queued


def retain(context: JobContext) -> PurgeReport:
    """Remove the raw bytes of processed mail (and sent notices) that retention says are due."""
    now = context.clock()
    return purge(context.engine, RetentionPolicy.from_settings(context.settings, now), now=now)


def catch_up(context: JobContext) -> None:
    """At start-up: what a stopped mailbot missed (start dates, today's reminders, the daily
    retention run)."""
    report = run_apply(context, via="startup")
    if report.applied:
        log.info("catch-up: applied %d application(s) that came due", len(report.applied))
    now = context.clock()
    zone = context.settings.zone
    if reminders_due(now, zone, context.config.reminder_time, context.calendar):
        remind(context)
    retain(context)  # idempotent: whatever is due now, once
