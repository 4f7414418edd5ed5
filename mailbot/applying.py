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

from sqlalchemy import (
    CompoundSelect,
    CursorResult,
    Engine,
    Table,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlmodel import Session, SQLModel, col

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
from mailbot.normalize import USER_CODE_LENGTH
from mailbot.notify import send_to_applicants, status_url

log = logging.getLogger(__name__)

MIDNIGHT = time(0, 0)
# Applications per transaction. A batch is all or nothing for each of its applications; bigger
# batches amortise the commit (an fsync on SQLite) and the statements over more applications,
# smaller ones hold the write lock (SQLite's only one) for less time. Rendering the two
# notices costs about 45 ms per application (nearly all of it in the email package's header
# folding), so 20 applications hold the lock for about a second, and the commit adds ~2 %.
DEFAULT_BATCH = 20
APPLY_JOB_PREFIX = "apply:"
ABOLISHED = "abolished"
ACTIVE = "active"
SYSTEM_ACTOR = "mailbot"

# Core tables: the batch statements are set-based and need no ORM objects.
_TABLES = SQLModel.metadata.tables
_APPLICATION: Table = _TABLES[Application.__tablename__]
_ITEM: Table = _TABLES[ApplicationItem.__tablename__]
_USER_ID: Table = _TABLES[UserId.__tablename__]
_USER_CODE: Table = _TABLES[UserCode.__tablename__]
_AUDIT: Table = _TABLES[AuditEvent.__tablename__]


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


@dataclass(frozen=True)
class _Claimed:
    id: int
    receipt_no: str
    office_code: str
    start_date: date


def _apply_alone(
    engine: Engine,
    settings: Settings,
    one: _Claimed,
    now: datetime,
    via: str,
    report: ApplyReport,
    failed_ids: set[int],
) -> None:
    try:
        with session_scope(engine) as session:
            again = _claim(session, None, 1, only=one.id, exclude=())
            if not again:
                return  # applied or changed meanwhile by someone else
            report.applied += _apply_batch(session, settings, again, now, via, notify=True)
    except Exception as exc:
        failed_ids.add(one.id)
        report.failed[one.receipt_no] = f"{type(exc).__name__}: {exc}"
        log.exception("apply: %s failed and stays approved", one.receipt_no)


def _claim(
    session: Session,
    through: date | None,
    limit: int | None,
    *,
    exclude: Iterable[int],
    only: int | None = None,
    lock: bool = True,
) -> list[_Claimed]:
    a = _APPLICATION.c
    query = select(a.id, a.receipt_no, a.office_code, a.start_date).where(
        a.status == APPROVED, a.start_date.is_not(None)
    )
    # No ORDER BY: every due application is applied in this run anyway, and sorting all the
    # approved rows for each batch would make a large backlog quadratic. The status index
    # hands out approved rows directly.
    if through is not None:
        query = query.where(a.start_date <= through)
    if only is not None:
        query = query.where(a.id == only)
    skip = list(exclude)
    if skip:
        query = query.where(a.id.notin_(skip))
    if limit is not None:
        query = query.limit(limit)
    if lock:
        # PostgreSQL: another process applying at the same moment skips these rows and takes
        # the next ones. SQLite ignores it: BEGIN IMMEDIATE already made this the only writer.
        query = query.with_for_update(skip_locked=True)
    return [_Claimed(*row) for row in session.execute(query)]


def _apply_batch(
    session: Session,
    settings: Settings,
    claimed: Sequence[_Claimed],
    now: datetime,
    via: str,
    *,
    notify: bool,
) -> list[AppliedApplication]:
    """Apply the claimed (approved, due, locked) applications in the caller's transaction."""
    if not claimed:
        return []
    ids = [c.id for c in claimed]
    if notify:  # a real run (a dry run changes nothing and need not queue behind others)
        _lock_codes(session, ids)
    items = _items(session, ids)
    already = _already_abolished(session, ids)
    _abolish_user_ids(session, claimed)
    codes_now = _abolish_completed_codes(session, ids)
    _finish_applications(session, ids, now)
    results = []
    for one in claimed:
        own_ids, own_codes = items[one.id]
        codes = sorted({uid[:USER_CODE_LENGTH] for uid in own_ids} | set(own_codes))
        results.append(
            AppliedApplication(
                receipt_no=one.receipt_no,
                office_code=one.office_code,
                start_date=one.start_date,
                user_ids=tuple(uid for uid in own_ids if uid not in already),
                already_abolished=tuple(uid for uid in own_ids if uid in already),
                user_codes=tuple(code for code in codes if code in codes_now),
                codes_still_active=tuple(code for code in codes if code not in codes_now),
            )
        )
    _audit(session, ids, results, now, via)
    if notify:
        _notify(session, settings, ids, results, now)
    return results


def _items(session: Session, ids: list[int]) -> dict[int, tuple[list[str], list[str]]]:
    """Each application's (user IDs, user codes), in the order the request listed them."""
    found: dict[int, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    i = _ITEM.c
    rows = session.execute(
        select(i.application_id, i.kind, i.key).where(i.application_id.in_(ids)).order_by(i.id)
    ).all()  # one fetchall: a big application has tens of thousands of items
    for application_id, kind, key in rows:
        found[application_id][0 if kind == "user_id" else 1].append(key)
    return found


def _already_abolished(session: Session, ids: list[int]) -> set[str]:
    """Items whose ID is not active any more (abolished some other way): left as they are."""
    i, u = _ITEM.c, _USER_ID.c
    query = (
        select(u.user_id)
        .join(_ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", i.application_id.in_(ids), u.status != ACTIVE)
    )
    return set(session.execute(query).scalars())


def _abolish_user_ids(session: Session, claimed: Sequence[_Claimed]) -> None:
    """IDs → abolished, abolished on their application's start date.

    One UPDATE per start date in the batch (normally one). ``status = 'active'`` in the
    condition is what makes a second run, or an ID abolished some other way, a no-op.
    """
    by_start: dict[date, list[int]] = defaultdict(list)
    for one in claimed:
        by_start[one.start_date].append(one.id)
    i, u = _ITEM.c, _USER_ID.c
    for start, ids in sorted(by_start.items()):
        wanted = select(i.key).where(i.kind == "user_id", i.application_id.in_(ids))
        session.execute(
            update(_USER_ID)
            .where(u.status == ACTIVE, u.user_id.in_(wanted))
            .values(status=ABOLISHED, abolished_on=start)
        )


def _touched_codes(ids: list[int]) -> CompoundSelect[str]:
    """The user codes these applications touch: their IDs' codes and their code items."""
    i, u = _ITEM.c, _USER_ID.c
    return (
        select(u.user_code)
        .join(_ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", i.application_id.in_(ids))
        .union(select(i.key).where(i.kind == "user_code", i.application_id.in_(ids)))
    )


def _lock_codes(session: Session, ids: list[int]) -> None:
    """Lock the rows of the codes this batch touches, in code order, before changing anything.

    Two processes applying the last IDs of one shared code at the same moment would each
    see the other's IDs still active (uncommitted) and neither would abolish the code. With
    the code rows locked first, the second waits for the first to commit and then, its next
    statements seeing that commit, abolishes the code. Code order: no deadlock between
    batches. (PostgreSQL; SQLite's single writer already serialises the batches.)
    """
    c = _USER_CODE.c
    session.execute(
        select(c.code).where(c.code.in_(_touched_codes(ids))).order_by(c.code).with_for_update()
    ).all()


def _abolish_completed_codes(session: Session, ids: list[int]) -> set[str]:
    """Codes touched by these applications whose every ID is now abolished → abolished.

    Rule 3 (a code goes with its last ID) and rule 4 (a shared code goes only when every
    sharing office's IDs are gone) are the same statement: no ID of the code, in any office,
    may be anything but abolished. The code is abolished on the latest of its IDs' dates:
    the start date of the application that abolished its last ID.
    """
    u, c = _USER_ID.c, _USER_CODE.c
    touched = _touched_codes(ids)
    alive = exists().where(u.user_code == c.code, u.status != ABOLISHED)
    last_day = select(func.max(u.abolished_on)).where(u.user_code == c.code).scalar_subquery()
    statement = (
        update(_USER_CODE)
        .where(c.status == ACTIVE, c.code.in_(touched), ~alive)
        .values(status=ABOLISHED, abolished_on=last_day)
        .returning(c.code)
    )
    return set(session.execute(statement).scalars())


def _finish_applications(session: Session, ids: list[int], now: datetime) -> None:
    a, i = _APPLICATION.c, _ITEM.c
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(_APPLICATION)
        .where(a.id.in_(ids), a.status == APPROVED)
        .values(status=APPLIED, version=a.version + 1, updated_at=now)
    )
    changed = result.rowcount
    if changed != len(ids):
        # Claimed rows cannot change under us (row locks / the single SQLite writer); if they
        # did, roll everything back rather than apply half a batch.
        raise ApplyError(f"{len(ids) - changed} claimed application(s) changed meanwhile")
    # The items stop holding their IDs (rule 2 looks at open items only).
    session.execute(update(_ITEM).where(i.application_id.in_(ids)).values(open=False))


def _audit(
    session: Session,
    ids: list[int],
    results: list[AppliedApplication],
    now: datetime,
    via: str,
) -> None:
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
    session.execute(insert(_AUDIT), rows)


def _notify(
    session: Session,
    settings: Settings,
    ids: list[int],
    results: list[AppliedApplication],
    now: datetime,
) -> None:
    """Both notices per application, in this transaction (the transactional outbox)."""
    loaded = {
        a.id: a for a in session.scalars(select(Application).where(col(Application.id).in_(ids)))
    }
    for application_id, result in zip(ids, results, strict=True):
        application = loaded[application_id]
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
    a, i = _APPLICATION.c, _ITEM.c
    counts = (
        select(i.application_id, func.count().label("n"))
        .where(i.kind == "user_id")
        .group_by(i.application_id)
        .subquery()
    )
    rows = session.execute(
        select(a.receipt_no, a.office_code, a.start_date, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.application_id == a.id)
        .where(a.status == APPROVED, a.start_date.is_not(None))
        .order_by(a.start_date, a.id)
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
