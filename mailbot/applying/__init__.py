"""The start date: approved changes take effect exactly once (docs/domain.md rules 3, 4, 8).

The database decides. :func:`apply_due` applies every approved application whose start date
has come, whoever calls it: the scheduler's date job for that application, the periodic sweep,
the catch-up at start-up, or an operator (``mailbot apply-due``). A second run changes
nothing, so calling it too often is harmless and the scheduler only has to be timely, not
reliable.

What "has come" means: the apply time (``MAILBOT_APPLY_TIME``, midnight by default) of the
start date in ``MAILBOT_TIMEZONE`` has passed at ``now``. The host's own zone never matters.

Applications are claimed in batches (all due ones, up to DEFAULT_BATCH per transaction) and
each batch is one transaction of set-based statements that read no item into Python: the
user IDs become abolished on the start date, the ``applied`` audit events are written by
``INSERT … SELECT`` (the JSON detail built in SQL, and read back as the report), every user
code whose IDs are then all abolished becomes abolished too (rule 3; a shared code only once
every sharing office's IDs are gone, rule 4), the applications become ``applied``, the code
items of codes that stay active let go, and the notices to applicant and manager are queued
as outbox intents (``INSERT … SELECT``, rendered by the outbox before their first delivery).
A notice exists if and only if the apply committed. So a crash leaves each application
either wholly applied or not at all, and the next run completes the rest. On PostgreSQL the
claim is ``FOR UPDATE SKIP LOCKED``, so two processes applying at once split the work; SQLite
has one writer (``BEGIN IMMEDIATE``). A batch that fails is applied again in halves, halving
what fails again, so one bad application is found, reported and left approved without holding
up the others.

Its jobs, a module each: :mod:`~mailbot.applying.when` (when a start date is due),
:mod:`~mailbot.applying.run` (claiming batches, halving a failed one),
:mod:`~mailbot.applying.batch` (what a batch's statements share),
:mod:`~mailbot.applying.registry_changes` (IDs, codes and applications),
:mod:`~mailbot.applying.audit` (the ``applied`` events), :mod:`~mailbot.applying.applied_notices`
(the notices as outbox intents), :mod:`~mailbot.applying.report` (what a run reports) and
:mod:`~mailbot.applying.pending` (what is still to apply).
"""

from mailbot.applying.pending import PendingApply, pending_applies
from mailbot.applying.report import AppliedApplication, ApplyError, ApplyReport, format_report
from mailbot.applying.run import DEFAULT_BATCH, apply_due
from mailbot.applying.when import (
    APPLY_JOB_PREFIX,
    MIDNIGHT,
    apply_job_id,
    is_due,
    last_due_date,
    run_time,
)

__all__ = [
    "APPLY_JOB_PREFIX",
    "DEFAULT_BATCH",
    "MIDNIGHT",
    "AppliedApplication",
    "ApplyError",
    "ApplyReport",
    "PendingApply",
    "apply_due",
    "apply_job_id",
    "format_report",
    "is_due",
    "last_due_date",
    "pending_applies",
    "run_time",
]
