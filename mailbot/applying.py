"""The start date: approved changes take effect exactly once (DOMAIN.md rules 3, 4 and 8).

The database decides. :func:`apply_due` applies every approved application whose start date
has come, whoever calls it: the scheduler's date job for that application, the periodic sweep,
the catch-up at start-up, or an operator (``mailbot apply-due``). A second run changes
nothing, so calling it too often is harmless and the scheduler only has to be timely, not
reliable.

What "has come" means: the apply time (``MAILBOT_APPLY_TIME``, midnight by default) of the
start date in ``MAILBOT_TIMEZONE`` has passed at ``now``. The host's own zone never matters.

Applications are claimed in batches, oldest start date first, and each batch is one
transaction with set-based statements: the user IDs become abolished on the start date, every
user code whose IDs are then all abolished becomes abolished too (rule 3; a shared code only
once every sharing office's IDs are gone, rule 4), the applications become ``applied``, their
items stop holding the IDs, and the audit events and the notices to applicant and manager are
written in the same transaction (transactional outbox). So a crash leaves each application
either wholly applied or not at all, and the next run completes the rest. On PostgreSQL the
claim is ``FOR UPDATE SKIP LOCKED``, so two processes applying at once split the work; SQLite
has one writer (``BEGIN IMMEDIATE``). An application whose batch fails is retried alone, so
one bad application cannot hold up the others.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, and_, exists, func, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from db.engine import session_scope
from db.models import (
    APPLIED,
    APPROVED,
    Application,
    ApplicationItem,
    AuditEvent,
    UserCode,
    UserId,
)
from mailbot.config import Settings
from mailbot.errors import MailbotError
from mailbot.notify import send_to_applicants, status_url

log = logging.getLogger(__name__)

MIDNIGHT = time(0, 0)
# Applications per transaction. A batch is all or nothing for each of its applications; bigger
# batches amortise the commit (an fsync on SQLite) and the statements over more applications,
# smaller ones keep the write lock shorter. 100 applications of ten IDs commit in well under
# a tenth of a second on either database.
DEFAULT_BATCH = 100
APPLY_JOB_PREFIX = "apply:"
ABOLISHED = "abolished"
ACTIVE = "active"
SYSTEM_ACTOR = "mailbot"


class ApplyError(MailbotError):
    """An apply request that cannot be carried out as asked (e.g. applying ahead of time)."""


# --- when ------------------------------------------------------------------------------------


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


def as_of_moment(day: date, zone: tzinfo, apply_time: time = MIDNIGHT) -> datetime:
    """``--as-of DAY``: the moment at which start dates up to ``day`` have come."""
    return run_time(day, zone, apply_time)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedApplication:
    """What applying one application changed (or, in a dry run, would change)."""

    receipt_no: str
    office_code: str
    start_date: date
    user_ids: tuple[str, ...]  # the IDs that became abolished
    already_abolished: tuple[str, ...]  # items whose ID was abolished before (nothing to do)
    user_codes: tuple[str, ...]  # the codes that became abolished (rule 3, and rule 4)
    codes_still_active: tuple[str, ...]  # codes of its IDs that other IDs still keep alive

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt_no": self.receipt_no,
            "office_code": self.office_code,
            "start_date": self.start_date.isoformat(),
            "user_ids": list(self.user_ids),
            "already_abolished": list(self.already_abolished),
            "user_codes": list(self.user_codes),
            "codes_still_active": list(self.codes_still_active),
        }


@dataclass
class ApplyReport:
    now: datetime
    through: date  # start dates up to and including this one were due
    dry_run: bool
    applied: list[AppliedApplication] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # receipt number -> error

    @property
    def user_id_count(self) -> int:
        return sum(len(a.user_ids) for a in self.applied)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "through": self.through.isoformat(),
            "dry_run": self.dry_run,
            "applied": [a.as_dict() for a in self.applied],
            "failed": dict(self.failed),
        }


def format_report(report: ApplyReport) -> str:
    """The text ``mailbot apply-due`` prints."""
    verb = "would apply" if report.dry_run else "applied"
    lines = [
        f"{verb} {len(report.applied)} application(s), {report.user_id_count} user ID(s), "
        f"start dates through {report.through.isoformat()}"
    ]
    for item in report.applied:
        codes = f"; codes {', '.join(item.user_codes)}" if item.user_codes else ""
        still = (
            f"; shared codes kept: {', '.join(item.codes_still_active)}"
            if item.codes_still_active
            else ""
        )
        lines.append(
            f"  {item.receipt_no}  {item.start_date.isoformat()}  {item.office_code}  "
            f"{len(item.user_ids)} ID(s): {', '.join(item.user_ids[:10])}"
            f"{' …' if len(item.user_ids) > 10 else ''}{codes}{still}"
        )
    lines += [f"  FAILED {receipt_no}: {error}" for receipt_no, error in report.failed.items()]
    return "\n".join(lines)


# --- applying --------------------------------------------------------------------------------


def apply_due(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    apply_time: time = MIDNIGHT,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    via: str = "sweep",
) -> ApplyReport:
    """Apply every approved application whose start date has come at ``now``; idempotent.

    ``dry_run`` runs the very same statements in one transaction and rolls it back, so what it
    reports is exactly what a real run would do (no notices are rendered). ``via`` names the
    caller in the audit log (job, sweep, startup, cli).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    through = last_due_date(now, settings.zone, apply_time)
    report = ApplyReport(now=now, through=through, dry_run=dry_run)
    if dry_run:
        _dry_run(engine, settings, report, via)
        return report
    failed_ids: set[int] = set()
    while True:
        claimed: list[Application] = []
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
            # Find the application that failed the batch: apply each alone, so that the
            # others go through and the bad one is reported and left approved for later.
            log.exception("apply: a batch of %d failed; applying one at a time", len(claimed))
            for one in claimed:
                _apply_alone(engine, settings, one, now, via, report, failed_ids)
    if report.applied:
        log.info(
            "apply: %d application(s), %d user ID(s) applied (start dates through %s, via %s)",
            len(report.applied),
            report.user_id_count,
            through.isoformat(),
            via,
        )
    return report


def _apply_alone(
    engine: Engine,
    settings: Settings,
    one: Application,
    now: datetime,
    via: str,
    report: ApplyReport,
    failed_ids: set[int],
) -> None:
    assert one.id is not None
    try:
        with session_scope(engine) as session:
            again = _claim_one(session, one.id)
            if again is None:
                return  # applied or changed meanwhile by someone else
            report.applied += _apply_batch(session, settings, [again], now, via, notify=True)
    except Exception as exc:
        failed_ids.add(one.id)
        report.failed[one.receipt_no] = f"{type(exc).__name__}: {exc}"
        log.exception("apply: %s failed and stays approved", one.receipt_no)


def _dry_run(engine: Engine, settings: Settings, report: ApplyReport, via: str) -> None:
    with session_scope(engine) as session:
        claimed = _claim(session, report.through, None, exclude=set(), lock=False)
        if claimed:
            report.applied += _apply_batch(
                session, settings, claimed, report.now, via, notify=False
            )
        session.rollback()  # a dry run: the statements ran, nothing stays


def _claim(
    session: Session,
    through: date,
    limit: int | None,
    *,
    exclude: Iterable[int],
    lock: bool = True,
) -> list[Application]:
    query = (
        select(Application)
        .where(Application.status == APPROVED, col(Application.start_date) <= through)
        .order_by(col(Application.start_date), col(Application.id))
    )
    skip = list(exclude)
    if skip:
        query = query.where(col(Application.id).notin_(skip))
    if limit is not None:
        query = query.limit(limit)
    if lock:
        # PostgreSQL: another process applying at the same moment skips these rows and takes
        # the next ones. SQLite ignores it: BEGIN IMMEDIATE already made this the only writer.
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _claim_one(session: Session, application_id: int) -> Application | None:
    query = (
        select(Application)
        .where(Application.id == application_id, Application.status == APPROVED)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).first()


def _apply_batch(
    session: Session,
    settings: Settings,
    applications: Sequence[Application],
    now: datetime,
    via: str,
    *,
    notify: bool,
) -> list[AppliedApplication]:
    """Apply ``applications`` (claimed, approved, due) in the caller's transaction."""
    by_id = {a.id: a for a in applications if a.id is not None}
    ids = list(by_id)
    items = _items(session, ids)
    abolished_now = _abolish_user_ids(session, applications)
    codes_now = _abolish_completed_codes(session, ids)
    _finish_applications(session, ids, now)
    for application in applications:
        # The statements changed the rows; bring the loaded copies (which the notices read)
        # up to date without marking them dirty, so no per-row UPDATE follows at flush.
        set_committed_value(application, "status", APPLIED)
        set_committed_value(application, "version", application.version + 1)
        set_committed_value(application, "updated_at", now)
    results: list[AppliedApplication] = []
    for application in applications:
        assert application.id is not None
        own_ids = items[application.id]["user_id"]
        own_codes = sorted({uid[:5] for uid in own_ids} | set(items[application.id]["user_code"]))
        results.append(
            AppliedApplication(
                receipt_no=application.receipt_no,
                office_code=application.office_code,
                start_date=_start(application),
                user_ids=tuple(uid for uid in own_ids if uid in abolished_now),
                already_abolished=tuple(uid for uid in own_ids if uid not in abolished_now),
                user_codes=tuple(code for code in own_codes if code in codes_now),
                codes_still_active=tuple(code for code in own_codes if code not in codes_now),
            )
        )
    _audit(session, by_id, results, now, via)
    if notify:
        for application, result in zip(applications, results, strict=True):
            _notify(session, settings, application, result, now)
    return results


def _start(application: Application) -> date:
    assert application.start_date is not None  # approved applications always have one
    return application.start_date


def _items(session: Session, application_ids: list[int]) -> dict[int, dict[str, list[str]]]:
    found: dict[int, dict[str, list[str]]] = {
        i: {"user_id": [], "user_code": []} for i in application_ids
    }
    rows = session.execute(
        select(ApplicationItem.application_id, ApplicationItem.kind, ApplicationItem.key)
        .where(col(ApplicationItem.application_id).in_(application_ids))
        .order_by(col(ApplicationItem.id))
    )
    for application_id, kind, key in rows:
        found[application_id][kind].append(key)
    return found


def _abolish_user_ids(session: Session, applications: Sequence[Application]) -> set[str]:
    """IDs → abolished, abolished on their application's start date; the IDs that changed.

    One UPDATE per start date in the batch (normally one). ``status = 'active'`` in the
    condition is what makes a second run, or an ID abolished some other way, a no-op.
    """
    by_start: dict[date, list[int]] = defaultdict(list)
    for application in applications:
        assert application.id is not None
        by_start[_start(application)].append(application.id)
    changed: set[str] = set()
    for start, ids in sorted(by_start.items()):
        wanted = select(ApplicationItem.key).where(
            ApplicationItem.kind == "user_id", col(ApplicationItem.application_id).in_(ids)
        )
        statement = (
            update(UserId)
            .where(col(UserId.status) == ACTIVE, col(UserId.user_id).in_(wanted))
            .values(status=ABOLISHED, abolished_on=start)
            .returning(col(UserId.user_id))
            .execution_options(synchronize_session=False)
        )
        changed.update(session.execute(statement).scalars())
    return changed


def _abolish_completed_codes(session: Session, application_ids: list[int]) -> set[str]:
    """Codes touched by these applications whose every ID is now abolished → abolished.

    Rule 3 (a code goes with its last ID) and rule 4 (a shared code goes only when every
    sharing office's IDs are gone) are the same statement: no ID of the code, in any office,
    may still be anything but abolished. The code is abolished on the latest of its IDs'
    dates, which is this batch's start date for the ID that completed it.
    """
    touched = (
        select(UserId.user_code)
        .join(ApplicationItem, col(ApplicationItem.key) == col(UserId.user_id))
        .where(
            ApplicationItem.kind == "user_id",
            col(ApplicationItem.application_id).in_(application_ids),
        )
    ).union(
        select(ApplicationItem.key).where(
            ApplicationItem.kind == "user_code",
            col(ApplicationItem.application_id).in_(application_ids),
        )
    )
    alive = exists().where(
        and_(col(UserId.user_code) == col(UserCode.code), col(UserId.status) != ABOLISHED)
    )
    last_day = (
        select(func.max(UserId.abolished_on))
        .where(col(UserId.user_code) == col(UserCode.code))
        .scalar_subquery()
    )
    statement = (
        update(UserCode)
        .where(col(UserCode.status) == ACTIVE, col(UserCode.code).in_(touched), ~alive)
        .values(status=ABOLISHED, abolished_on=last_day)
        .returning(col(UserCode.code))
        .execution_options(synchronize_session=False)
    )
    return set(session.execute(statement).scalars())


def _finish_applications(session: Session, application_ids: list[int], now: datetime) -> None:
    statement = (
        update(Application)
        .where(col(Application.id).in_(application_ids), col(Application.status) == APPROVED)
        .values(status=APPLIED, version=Application.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)  # the caller updates its copies
    )
    changed = session.execute(statement).rowcount
    if changed != len(application_ids):
        # Claimed rows cannot change under us (row locks / the single SQLite writer); if they
        # did, roll everything back rather than apply half a batch.
        raise ApplyError(f"{len(application_ids) - changed} claimed application(s) changed")
    # The items stop holding their IDs (rule 2 checks open items only).
    session.execute(
        update(ApplicationItem)
        .where(col(ApplicationItem.application_id).in_(application_ids))
        .values(open=False)
        .execution_options(synchronize_session=False)
    )


def _audit(
    session: Session,
    by_id: dict[int | None, Application],
    results: list[AppliedApplication],
    now: datetime,
    via: str,
) -> None:
    ids = [a.id for a in by_id.values()]
    rows = [
        {
            "at": now,
            "application_id": application_id,
            "event": "applied",
            "actor": SYSTEM_ACTOR,
            "inbound_id": None,
            "detail": {
                "start_date": result.start_date.isoformat(),
                "user_ids": list(result.user_ids),
                "already_abolished": list(result.already_abolished),
                "user_codes": list(result.user_codes),
                "codes_still_active": list(result.codes_still_active),
                "via": via,
            },
        }
        for application_id, result in zip(ids, results, strict=True)
    ]
    session.execute(insert(AuditEvent), rows)


def _notify(
    session: Session,
    settings: Settings,
    application: Application,
    result: AppliedApplication,
    now: datetime,
) -> None:
    send_to_applicants(
        session,
        settings,
        application,
        template="applied.txt.j2",
        kind="applied",
        subject=f"利用者ID廃止の適用完了のお知らせ（{application.receipt_no}）",
        event="applied",
        now=now,
        status_url=status_url(settings, application.receipt_no, now),
        abolished_user_ids=result.user_ids,
        abolished_codes=result.user_codes,
        codes_still_active=result.codes_still_active,
    )


# --- what is pending -------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingApply:
    receipt_no: str
    office_code: str
    start_date: date
    run_at: datetime  # aware, in the configured zone
    user_ids: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt_no": self.receipt_no,
            "office_code": self.office_code,
            "start_date": self.start_date.isoformat(),
            "run_at": self.run_at.isoformat(),
            "user_ids": self.user_ids,
        }


def pending_applies(
    session: Session, zone: tzinfo, apply_time: time = MIDNIGHT
) -> list[PendingApply]:
    """Approved applications not applied yet, earliest run time first (due ones included)."""
    counts = (
        select(ApplicationItem.application_id, func.count().label("n"))
        .where(ApplicationItem.kind == "user_id")
        .group_by(col(ApplicationItem.application_id))
        .subquery()
    )
    rows = session.execute(
        select(
            Application.receipt_no,
            Application.office_code,
            Application.start_date,
            func.coalesce(counts.c.n, 0),
        )
        .outerjoin(counts, counts.c.application_id == col(Application.id))
        .where(Application.status == APPROVED, col(Application.start_date).is_not(None))
        .order_by(col(Application.start_date), col(Application.id))
    )
    return [
        PendingApply(
            receipt_no=receipt_no,
            office_code=office_code,
            start_date=start,
            run_at=run_time(start, zone, apply_time),
            user_ids=int(n),
        )
        for receipt_no, office_code, start, n in rows
    ]
