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
    """The date job of ``apply:RECEIPT_NO``: apply whatever is due (this one among them)."""
    context = bound_context()
    run_apply(context, via=f"job:{receipt_no}")


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
