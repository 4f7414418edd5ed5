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
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    CursorResult,
    Engine,
    Integer,
    String,
    Subquery,
    Table,
    and_,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    select,
    true,
    update,
)
from sqlmodel import Session, SQLModel

from db.dialect import JsonSql, dialect_of, in_one_parameter, is_postgresql, skip_locked
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
from mailbot import notices
from mailbot.config import Settings
from mailbot.errors import MailbotError
from mailbot.notices import APPLIED_KIND
from mailbot.outbox import enqueue_intents

log = logging.getLogger(__name__)

MIDNIGHT = time(0, 0)
# Applications per transaction. A batch is all or nothing for each of its applications; bigger
# batches amortise the commit (an fsync on SQLite) and the statements over more applications,
# smaller ones hold the write lock (SQLite's only one) for less time. Nothing is rendered in
# the transaction any more (the notices are outbox intents), so a batch costs ~0.1 ms per
# application: 5,000 hold SQLite's lock for about half a second (docs/performance.md).
DEFAULT_BATCH = 5000
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


@dataclass(frozen=True)
class _Claimed:
    id: int
    receipt_no: str
    office_code: str
    start_date: date


def _apply_in_halves(
    engine: Engine,
    settings: Settings,
    failed: list[_Claimed],
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


def _halves(claimed: list[_Claimed]) -> list[list[_Claimed]]:
    """The two halves of a batch (the first half last, so it is tried first); one stays one."""
    if len(claimed) < 2:
        return [claimed]
    half = len(claimed) // 2
    return [claimed[half:], claimed[:half]]


def _apply_again(
    engine: Engine, settings: Settings, piece: list[_Claimed], now: datetime, via: str
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
    """Apply the claimed (approved, due, locked) applications in the caller's transaction.

    Every statement is set-based over the whole batch; nothing reads the items into Python.
    The audit events are written (and read back) between abolishing the IDs and the codes:
    that is when "the codes that go now" is a plain predicate on the registry, and the very
    predicate the code UPDATE uses next, so the report and the change cannot disagree.
    """
    if not claimed:
        return []
    batch = _Batch(session, [c.id for c in claimed])
    if notify and batch.postgres:  # SQLite's single writer already serialises batches
        _lock_codes(session, batch)
    already = _already_abolished(session, batch)
    _abolish_user_ids(session, claimed)
    details = _audit(session, batch, already, now, via)
    reported = {code for detail in details.values() for code in detail["user_codes"]}
    codes_now = _abolish_completed_codes(session, reported)
    if codes_now != reported:
        # Cannot happen while the code rows are locked; refuse rather than report untruly.
        raise ApplyError(
            f"codes abolished ({len(codes_now)}) differ from those audited ({len(reported)})"
        )
    _finish_applications(session, batch, now)
    if notify:
        _queue_notices(session, settings, batch, now)
    return [_result(one, details[one.id]) for one in claimed]


def _result(one: _Claimed, detail: dict[str, Any]) -> AppliedApplication:
    return AppliedApplication(
        receipt_no=one.receipt_no,
        office_code=one.office_code,
        start_date=one.start_date,
        user_ids=tuple(detail["user_ids"]),
        already_abolished=tuple(detail["already_abolished"]),
        user_codes=tuple(detail["user_codes"]),
        codes_still_active=tuple(detail["codes_still_active"]),
    )


class _Batch:
    """The claimed applications' ids, and how a statement names them: one bound parameter.

    ``IN (…)`` would bind one parameter per application, several times per statement; with
    thousands of applications per batch that alone costs more than the statements' work
    (and SQLite caps the number of parameters): see :func:`db.dialect.in_one_parameter`.
    """

    def __init__(self, session: Session, ids: list[int]) -> None:
        self.ids = ids
        self.dialect = dialect_of(session)
        self.postgres = is_postgresql(session)

    def __len__(self) -> int:
        return len(self.ids)

    def holds(self, column: ColumnElement[int]) -> ColumnElement[bool]:
        return in_one_parameter(self.dialect, column, self.ids, Integer())


def _already_abolished(session: Session, batch: _Batch) -> list[str]:
    """Items whose ID is not active any more (abolished some other way): left as they are.

    Read before the IDs are abolished, because afterwards nothing tells them apart. Almost
    always empty (rule 2 refuses abolished IDs at intake), so this costs one pass, no rows.
    """
    i, u = _ITEM.c, _USER_ID.c
    query = (
        select(u.user_id)
        .join(_ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", batch.holds(i.application_id), u.status != ACTIVE)
    )
    return list(session.execute(query).scalars())


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
        part = _Batch(session, ids)
        wanted = select(i.key).where(i.kind == "user_id", part.holds(i.application_id))
        session.execute(
            update(_USER_ID)
            .where(u.status == ACTIVE, u.user_id.in_(wanted))
            .values(status=ABOLISHED, abolished_on=start)
        )


def _touched_codes(batch: _Batch) -> CompoundSelect[str]:
    """The user codes these applications touch: their IDs' codes and their code items."""
    i, u = _ITEM.c, _USER_ID.c
    return (
        select(u.user_code)
        .join(_ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .union(select(i.key).where(i.kind == "user_code", batch.holds(i.application_id)))
    )


def _lock_codes(session: Session, batch: _Batch) -> None:
    """Lock the rows of the codes this batch touches, in code order, before changing anything.

    Two processes applying the last IDs of one shared code at the same moment would each
    see the other's IDs still active (uncommitted) and neither would abolish the code. With
    the code rows locked first, the second waits for the first to commit and then, its next
    statements seeing that commit, abolishes the code. Code order: no deadlock between
    batches. (PostgreSQL; SQLite's single writer already serialises the batches.)
    """
    c = _USER_CODE.c
    session.execute(
        select(c.code).where(c.code.in_(_touched_codes(batch))).order_by(c.code).with_for_update()
    ).all()


def _code_goes() -> ColumnElement[bool]:
    """True for an active code none of whose IDs, in any office, is anything but abolished.

    Rule 3 (a code goes with its last ID) and rule 4 (a shared code goes only when every
    sharing office's IDs are gone) are this one predicate, evaluated once the batch's IDs are
    abolished: by the audit (what the report says) and by the code UPDATE (what happens).
    """
    u, c = _USER_ID.c, _USER_CODE.c
    alive = exists().where(u.user_code == c.code, u.status != ABOLISHED)
    return and_(c.status == ACTIVE, ~alive)


def _abolish_completed_codes(session: Session, codes: set[str]) -> set[str]:
    """The codes the audit found going (:func:`_code_goes`) → abolished; those abolished.

    Given by the audit rather than worked out again from the items: the same predicate, one
    statement later in the same transaction, and checked again here so that a code can only
    go when it must. The code is abolished on the latest of its IDs' dates: the start date of
    the application that abolished its last ID.
    """
    if not codes:
        return set()
    u, c = _USER_ID.c, _USER_CODE.c
    last_day = select(func.max(u.abolished_on)).where(u.user_code == c.code).scalar_subquery()
    statement = (
        update(_USER_CODE)
        .where(
            in_one_parameter(session, c.code, sorted(codes), String()),
            _code_goes(),
        )
        .values(status=ABOLISHED, abolished_on=last_day)
        .returning(c.code)
    )
    return set(session.execute(statement).scalars())


def _finish_applications(session: Session, batch: _Batch, now: datetime) -> None:
    a = _APPLICATION.c
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(_APPLICATION)
        .where(batch.holds(a.id), a.status == APPROVED)
        .values(status=APPLIED, version=a.version + 1, updated_at=now)
    )
    changed = result.rowcount
    if changed != len(batch):
        # Claimed rows cannot change under us (row locks / the single SQLite writer); if they
        # did, roll everything back rather than apply half a batch.
        raise ApplyError(f"{len(batch) - changed} claimed application(s) changed meanwhile")
    _let_go_of_active_codes(session, batch)


def _let_go_of_active_codes(session: Session, batch: _Batch) -> None:
    """Code items of codes that stay active stop holding them; every other item keeps holding.

    A shared code that stays active will be named by another office's application (rule 4),
    so its item must let go. An abolished ID or code is never named again (rules 2 and 3
    refuse it first), so the items holding those keep holding them: no need to rewrite ten
    items per application, which is much of what makes a big start date cheap (see
    ApplicationItem).
    """
    i, c = _ITEM.c, _USER_CODE.c
    still_active = select(c.code).where(c.status == ACTIVE)
    session.execute(
        update(_ITEM)
        .where(batch.holds(i.application_id), i.kind == "user_code", i.key.in_(still_active))
        .values(open=False)
    )


# --- the audit events, set-based -------------------------------------------------------------


def _audit(
    session: Session, batch: _Batch, already: list[str], now: datetime, via: str
) -> dict[int, dict[str, Any]]:
    """One ``applied`` event per application, ``INSERT … SELECT``; application id → detail.

    The detail lists the IDs abolished now and those found abolished already, in request
    order, and the codes the application touches that go now or stay (rule 4), in code order.
    It is read back (``RETURNING``) as the report, and the applied notice is rendered from
    it later (mailbot.notify), so all three say the same.
    """
    as_json = JsonSql(session)
    a = _APPLICATION.c
    id_lists = _id_lists(as_json, batch, already)
    code_lists = _code_lists(as_json, batch)
    detail = as_json.object(
        start_date=a.start_date,
        user_ids=as_json.embed(id_lists.c.user_ids),
        already_abolished=as_json.embed(id_lists.c.already_abolished),
        user_codes=as_json.embed(code_lists.c.user_codes),
        codes_still_active=as_json.embed(code_lists.c.codes_still_active),
        via=literal(via, String),
    )
    rows = (
        select(
            literal(now, _AUDIT.c.at.type),
            a.id,
            literal("applied", String),
            literal(SYSTEM_ACTOR, String),
            null(),
            detail,
        )
        .select_from(_APPLICATION)
        .outerjoin(id_lists, id_lists.c.application_id == a.id)
        .outerjoin(code_lists, code_lists.c.application_id == a.id)
        .where(batch.holds(a.id))
    )
    e = _AUDIT.c
    statement = (
        insert(_AUDIT)
        .from_select([e.at, e.application_id, e.event, e.actor, e.inbound_id, e.detail], rows)
        .returning(e.application_id, e.detail)
    )
    return {application_id: detail for application_id, detail in session.execute(statement)}


def _id_lists(as_json: JsonSql, batch: _Batch, already: list[str]) -> Subquery:
    """Per application: its user IDs abolished now, and those abolished before, in order."""
    i = _ITEM.c
    items = (
        select(i.application_id, i.key, i.id)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .order_by(i.application_id, i.id)
        .subquery()
    )
    was_abolished = items.c.key.in_(already) if already else false()
    return (
        select(
            items.c.application_id,
            as_json.array(items.c.key, items.c.id, ~was_abolished).label("user_ids"),
            as_json.array(items.c.key, items.c.id, was_abolished).label("already_abolished"),
        )
        .group_by(items.c.application_id)
        .subquery()
    )


def _code_lists(as_json: JsonSql, batch: _Batch) -> Subquery:
    """Per application: the codes it touches that go now, and the active ones that stay."""
    i, u, c = _ITEM.c, _USER_ID.c, _USER_CODE.c
    touched = (
        select(i.application_id, u.user_code.label("code"))
        .join(_USER_ID, u.user_id == i.key)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .union(
            select(i.application_id, i.key).where(
                i.kind == "user_code", batch.holds(i.application_id)
            )
        )
        .subquery()
    )
    codes = (
        select(touched.c.application_id, c.code, _code_goes().label("goes"))
        .join(_USER_CODE, c.code == touched.c.code)
        .where(c.status == ACTIVE)
        .order_by(touched.c.application_id, c.code)
        .subquery()
    )
    return (
        select(
            codes.c.application_id,
            as_json.array(codes.c.code, codes.c.code, codes.c.goes).label("user_codes"),
            as_json.array(codes.c.code, codes.c.code, ~codes.c.goes).label("codes_still_active"),
        )
        .group_by(codes.c.application_id)
        .subquery()
    )


# --- the notices, as intents in the outbox ---------------------------------------------------


def _queue_notices(session: Session, settings: Settings, batch: _Batch, now: datetime) -> None:
    """The applied notice to applicant and manager (once when they share an address).

    Intents, not messages: one ``INSERT … SELECT`` per role puts rows without bytes into the
    outbox in this transaction, so a notice exists if and only if the apply committed. The
    outbox renders each (mailbot.notify.render_intent: the template, a reply token for that
    recipient, the facts from the audit event written above) before its first delivery.
    """
    a = _APPLICATION.c
    # Message-IDs are fixed now: unique per batch (the nonce), application and role.
    nonce = uuid.uuid4().hex
    for role, address, only_if in (
        ("a", a.applicant_email, true()),
        ("m", a.manager_email, a.manager_email != a.applicant_email),
    ):
        message_id = (
            literal(f"<{APPLIED_KIND}.{nonce}.", String)
            + cast(a.id, String)
            + literal(f".{role}@{settings.domain}>", String)
        )
        key = notices.dedupe_key(notices.application_cause(a.receipt_no), notices.APPLIED, address)
        rows = select(
            literal(APPLIED_KIND, String).label("kind"),
            key.label("dedupe_key"),
            a.id.label("application_id"),
            a.inbound_id.label("inbound_id"),
            func.trim(address).label("recipient"),
            message_id.label("message_id"),
        ).where(batch.holds(a.id), only_if)
        enqueue_intents(session, rows, now=now)


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
