"""An apply run: claim the due applications a batch at a time, apply each batch in one
transaction, and find a failing application by halving its batch."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Engine, Integer, select
from sqlmodel import Session

from db.dialect import in_one_parameter, skip_locked
from db.engine import session_scope
from db.models import APPROVED
from mailbot.applying.applied_notices import queue_notices
from mailbot.applying.audit import audit_applied
from mailbot.applying.batch import APPLICATION, Batch, Claimed
from mailbot.applying.registry_changes import (
    abolish_completed_codes,
    abolish_user_ids,
    already_abolished,
    finish_applications,
    lock_codes,
)
from mailbot.applying.report import AppliedApplication, ApplyError, ApplyReport
from mailbot.applying.when import MIDNIGHT, last_due_date, run_time
from mailbot.config import Settings

log = logging.getLogger("mailbot.applying")

# Applications per transaction. A batch is all or nothing for each of its applications; bigger
# batches amortise the commit (an fsync on SQLite) and the statements over more applications,
# smaller ones hold the write lock (SQLite's only one) for less time. Nothing is rendered in
# the transaction any more (the notices are outbox intents), so a batch costs ~0.1 ms per
# application: 5,000 hold SQLite's lock for about half a second (docs/performance.md).
DEFAULT_BATCH = 5000


def apply_due(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    apply_time: time = MIDNIGHT,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    via: str = "sweep",
    through: date | None = None,
) -> ApplyReport:
    """Apply every approved application whose start date has come at ``now``; idempotent.

    ``through`` (``--as-of``) limits it to start dates up to that day; a day whose start
    dates have not come yet is refused unless ``dry_run``. ``dry_run`` runs the very same
    statements in one transaction and rolls it back, so what it reports is exactly what a real
    run would do (no notices are rendered). ``via`` names the caller in the audit log (job,
    sweep, startup, cli).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    due = last_due_date(now, settings.zone, apply_time)
    if through is not None and through > due and not dry_run:
        raise ApplyError(
            f"start dates after {due.isoformat()} have not come yet "
            f"({run_time(through, settings.zone, apply_time).isoformat()} is ahead); "
            "nothing is applied ahead of its date. Add --dry-run to preview that day."
        )
    through = due if through is None else through
    report = ApplyReport(now=now, through=through, dry_run=dry_run)
    if dry_run:
        with session_scope(engine) as session:
            claimed = _claim(session, through, None, exclude=(), lock=False)
            report.applied += _apply_batch(session, settings, claimed, now, via, notify=False)
            session.rollback()  # a dry run: the statements ran, nothing stays
        return report
    failed_ids: set[int] = set()
    while True:
        claimed = []
        try:
            with session_scope(engine) as session:
                claimed = _claim(session, through, batch_size, exclude=failed_ids)
                if not claimed:
                    break
                applied = _apply_batch(session, settings, claimed, now, via, notify=True)
            report.applied += applied
        except Exception:
            if not claimed:
                raise  # the claim itself failed: the database, not an application
            # Find the applications that failed the batch by halving it, so that the others
            # go through and each bad one is reported and left approved for later.
            log.exception("apply: a batch of %d failed; applying it in halves", len(claimed))
            _apply_in_halves(engine, settings, claimed, now, via, report, failed_ids)
    if report.applied:
        log.info(
            "apply: %d application(s), %d user ID(s) applied (start dates through %s, via %s)",
            len(report.applied),
            report.user_id_count,
            through.isoformat(),
            via,
        )
    return report


def _apply_in_halves(
    engine: Engine,
    settings: Settings,
    failed: list[Claimed],
    now: datetime,
    via: str,
    report: ApplyReport,
    failed_ids: set[int],
) -> None:
    """Apply a failed batch's halves, each in its own transaction, halving what fails again.

    k bad applications in a batch of n cost about 2·k·log2(n) transactions, not n, so big
    batches stay cheap to recover. A single application that fails is reported and stays
    approved (``failed_ids`` keeps this run from claiming it again).
    """
    pieces = _halves(failed)
    while pieces:
        piece = pieces.pop()
        try:
            report.applied += _apply_again(engine, settings, piece, now, via)
        except Exception as exc:
            if len(piece) > 1:
                log.warning("apply: %d application(s) failed again (%s); halving", len(piece), exc)
                pieces += _halves(piece)
                continue
            failed_ids.add(piece[0].id)
            report.failed[piece[0].receipt_no] = f"{type(exc).__name__}: {exc}"
            log.exception("apply: %s failed and stays approved", piece[0].receipt_no)


def _halves(claimed: list[Claimed]) -> list[list[Claimed]]:
    """The two halves of a batch (the first half last, so it is tried first); one stays one."""
    if len(claimed) < 2:
        return [claimed]
    half = len(claimed) // 2
    return [claimed[half:], claimed[:half]]


def _apply_again(
    engine: Engine, settings: Settings, piece: list[Claimed], now: datetime, via: str
) -> list[AppliedApplication]:
    """Claim ``piece`` again and apply what is still approved of it, in one transaction."""
    with session_scope(engine) as session:
        again = _claim(session, None, None, only=[one.id for one in piece], exclude=())
        # Empty when someone else applied or changed them meanwhile: nothing to do.
        applied = _apply_batch(session, settings, again, now, via, notify=True)
    return applied  # counted once committed


def _claim(
    session: Session,
    through: date | None,
    limit: int | None,
    *,
    exclude: Iterable[int],
    only: Sequence[int] | None = None,
    lock: bool = True,
) -> list[Claimed]:
    a = APPLICATION.c
    query = select(a.id, a.receipt_no, a.office_code, a.start_date).where(
        a.status == APPROVED, a.start_date.is_not(None)
    )
    # No ORDER BY: every due application is applied in this run anyway, and sorting all the
    # approved rows for each batch would make a large backlog quadratic. The status index
    # hands out approved rows directly.
    if through is not None:
        query = query.where(a.start_date <= through)
    if only is not None:
        query = query.where(in_one_parameter(session, a.id, only, Integer()))
    skip = list(exclude)
    if skip:
        query = query.where(a.id.notin_(skip))
    if limit is not None:
        query = query.limit(limit)
    if lock:
        # PostgreSQL: another process applying at the same moment skips these rows and takes
        # the next ones. SQLite ignores it: BEGIN IMMEDIATE already made this the only writer.
        query = skip_locked(query)
    return [Claimed(*row) for row in session.execute(query)]


def _apply_batch(
    session: Session,
    settings: Settings,
    claimed: Sequence[Claimed],
    now: datetime,
    via: str,
    *,
    notify: bool,
) -> list[AppliedApplication]:
    """Apply the claimed (approved, due, locked) applications in the caller's transaction.

    Every statement is set-based over the whole batch; nothing reads the items into Python.
    The audit events are written (and read back) between abolishing the IDs and the codes:
    that is when "the codes that go now" is a plain predicate on the registry, and the very
    predicate the code UPDATE uses next, so the report and the change cannot disagree.
    """
    if not claimed:
        return []
    batch = Batch(session, [c.id for c in claimed])
    if notify and batch.postgres:  # SQLite's single writer already serialises batches
        lock_codes(session, batch)
    already = already_abolished(session, batch)
    abolish_user_ids(session, claimed)
    details = audit_applied(session, batch, already, now, via)
    reported = {code for detail in details.values() for code in detail["user_codes"]}
    codes_now = abolish_completed_codes(session, reported)
    if codes_now != reported:
        # Cannot happen while the code rows are locked; refuse rather than report untruly.
        raise ApplyError(
            f"codes abolished ({len(codes_now)}) differ from those audited ({len(reported)})"
        )
    finish_applications(session, batch, now)
    if notify:
        queue_notices(session, settings, batch, now)
    return [_result(one, details[one.id]) for one in claimed]


def _result(one: Claimed, detail: dict[str, Any]) -> AppliedApplication:
    return AppliedApplication(
        receipt_no=one.receipt_no,
        office_code=one.office_code,
        start_date=one.start_date,
        user_ids=tuple(detail["user_ids"]),
        already_abolished=tuple(detail["already_abolished"]),
        user_codes=tuple(detail["user_codes"]),
        codes_still_active=tuple(detail["codes_still_active"]),
    )
