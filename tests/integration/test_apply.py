"""Applying on the start date, on both databases: by reply-approved applications through the
real notices, rules 3, 4 and 8, dry runs, failure isolation, concurrent appliers, the date
jobs in the job store, and the scheduler service running for real (a few seconds)."""

from __future__ import annotations

import asyncio
import threading
import time as clock
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, String, Table, func, literal, select, union_all, update
from sqlmodel import SQLModel, col

from bench.apply import seed, user_ids_of
from db.engine import session_scope
from db.models import (
    Application,
    AuditEvent,
    OutboundMessage,
    SchedulerJob,
    UserCode,
    UserId,
)
from mailbot.applying import ApplyError, apply_due, apply_job_id
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.id_state import may_perform
from mailbot.notify import intent_renderer
from mailbot.outbox import MaildirTransport, deliver_due
from mailbot.review import Action, Decision, ReviewContext, decide
from mailbot.staff import find_staff
from scheduler.config import ScheduleConfig
from scheduler.jobs import JobContext
from scheduler.leader import leader_lock_for
from scheduler.listing import list_scheduled
from scheduler.service import run_scheduler
from scheduler.setup import build_scheduler
from scheduler.sync import APPLY_STORE, sync_apply_jobs
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.loop import LoopThread
from tests.support.replies import reply_address, reply_to
from tests.support.requests import ITO, KATO, SATO, YAMADA, form, mail

START = date(2026, 12, 15)
LATER = date(2026, 12, 22)
TOKYO_MIDNIGHT = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)  # 2026-12-15 00:00 in Tokyo
JUST_BEFORE = TOKYO_MIDNIGHT - timedelta(seconds=1)

_USER_ID: Table = SQLModel.metadata.tables[UserId.__tablename__]


# --- helpers -----------------------------------------------------------------------------------


def to(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)


def submit(
    h: Harness,
    *user_ids: str,
    start: date = START,
    sender: str = YAMADA,
    office: str = "TYO01",
    manager: str = SATO,
) -> tuple[str, list[EmailMessage]]:
    out = h.round_trip(
        mail(
            form(*user_ids, start=start, office_code=office, manager_email=manager), sender=sender
        ),
        mail_from=sender,
    )
    receipt_no = h.applications()[-1].receipt_no
    return receipt_no, out


def approve(h: Harness, receipt_no: str) -> None:
    ctx = ReviewContext(settings=h.settings, calendar=BusinessCalendar(), now=h.now)
    with session_scope(h.engine) as session:
        application = session.scalars(
            select(Application).where(col(Application.receipt_no) == receipt_no)
        ).one()
        decide(
            session,
            ctx,
            application,
            find_staff(session, STAFF),
            Decision(Action.APPROVE),
            via="cli",
        )


def status_of(engine: Engine, receipt_no: str) -> str:
    with session_scope(engine) as session:
        return str(
            session.execute(
                select(col(Application.status)).where(col(Application.receipt_no) == receipt_no)
            ).scalar_one()
        )


def user(engine: Engine, user_id: str) -> tuple[str, date | None]:
    with session_scope(engine) as session:
        row = session.get(UserId, user_id)
        assert row is not None
        return row.status, row.abolished_on


def code(engine: Engine, user_code: str) -> tuple[str, date | None]:
    with session_scope(engine) as session:
        row = session.get(UserCode, user_code)
        assert row is not None
        return row.status, row.abolished_on


def applied_events(engine: Engine) -> list[AuditEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditEvent).where(col(AuditEvent.event) == "applied")))


def count(engine: Engine, statement: Any) -> int:
    with session_scope(engine) as session:
        return int(session.execute(statement).scalar_one())


def applied_outbox(engine: Engine) -> int:
    return count(
        engine,
        select(func.count())
        .select_from(OutboundMessage)
        .where(col(OutboundMessage.kind) == "applied"),
    )


def deliver(h: Harness) -> int:
    """Deliver as the outbox service does: with the settings it renders applied notices by."""
    return asyncio.run(
        deliver_due(
            h.engine,
            MaildirTransport(h.maildir_path),
            now=h.now,
            max_attempts=h.settings.outbox_max_attempts,
            backoff_seconds=h.settings.outbox_backoff_seconds,
            render=intent_renderer(h.settings),
        )
    )


def application_id(engine: Engine, receipt_no: str) -> int:
    with session_scope(engine) as session:
        return int(
            session.execute(
                select(col(Application.id)).where(col(Application.receipt_no) == receipt_no)
            ).scalar_one()
        )


def can(engine: Engine, user_id: str, operation: str, day: date) -> bool:
    with session_scope(engine) as session:
        return may_perform(session, user_id, operation, day)[0]


# --- applying through the real flow ------------------------------------------------------------


def test_a_reply_approved_application_applies_at_tokyo_midnight_once(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory()
    receipt_no, out = submit(h, "1ANACA0A", "1ANACA0B")
    review = next(m for m in out if to(m) == STAFF)
    h.round_trip(
        reply_to(review, sender=STAFF, body="承認します"),
        mail_from=STAFF,
        rcpt_to=reply_address(review),
    )
    assert status_of(h.engine, receipt_no) == "approved"

    assert apply_due(h.engine, h.settings, JUST_BEFORE).applied == []
    assert user(h.engine, "1ANACA0A") == ("active", None)

    report = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT)
    assert [(a.receipt_no, a.user_ids) for a in report.applied] == [
        (receipt_no, ("1ANACA0A", "1ANACA0B"))
    ]
    assert status_of(h.engine, receipt_no) == "applied"
    assert user(h.engine, "1ANACA0A") == ("abolished", START)
    assert user(h.engine, "1ANAC001") == ("active", None)  # not in the application
    assert code(h.engine, "1ANAC") == ("active", None)  # 1ANAC001 (and OSK01's ID) keep it

    # A second run, later the same day, changes nothing.
    assert apply_due(h.engine, h.settings, TOKYO_MIDNIGHT + timedelta(hours=5)).applied == []
    assert len(applied_events(h.engine)) == 1

    # Rule 8, as `mailbot ids can` answers it: business until the day before, not from it.
    assert can(h.engine, "1ANACA0A", "business", START - timedelta(days=1))
    assert not can(h.engine, "1ANACA0A", "business", START)
    assert can(h.engine, "1ANACA0A", "management_statistics", START)
    assert can(h.engine, "1ANACA0A", "package_software", START)  # the code lives on

    h.now = TOKYO_MIDNIGHT + timedelta(minutes=1)  # the notices were queued at midnight
    deliver(h)
    notices = [m for m in h.new_mail() if "適用完了" in str(m["Subject"])]
    assert sorted(to(m) for m in notices) == [SATO, YAMADA]
    text = body_text(next(m for m in notices if to(m) == YAMADA))
    assert text.startswith("○○株式会社 東京事業所 通関部\n山田 太郎 様\n")
    assert (
        f"申込受付番号 {receipt_no} のお申込みの内容は、利用開始日 2026年12月15日（火） に適用されました。"
        in text
    )
    assert "  1ANACA0A（netNACCS）\n  1ANACA0B（netNACCS）" in text
    assert "「システムサービス利用契約変更承認通知」" in text
    assert f"http://127.0.0.1:8080/a/{receipt_no}?t=" in text
    assert "1ANAC：他の利用者ID" in text


def test_a_code_whose_ids_are_all_abolished_goes_too(harness_factory: HarnessFactory) -> None:
    """Rule 3: OSK01 gives up both IDs of its own code 2BXYZ."""
    h = harness_factory()
    receipt_no, _ = submit(h, "2BXYZ001", "2BXYZ002", sender=KATO, office="OSK01", manager=ITO)
    approve(h, receipt_no)
    (applied,) = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT).applied
    assert applied.user_codes == ("2BXYZ",)
    assert code(h.engine, "2BXYZ") == ("abolished", START)
    assert can(h.engine, "2BXYZ001", "package_software", START - timedelta(days=1))
    assert not can(h.engine, "2BXYZ001", "package_software", START)
    (event,) = applied_events(h.engine)
    assert event.detail["user_codes"] == ["2BXYZ"] and event.actor == "mailbot"

    h.now = TOKYO_MIDNIGHT + timedelta(minutes=1)
    deliver(h)  # the applied notices are intents: the outbox renders them now
    notices = [m for m in h.new_mail() if "適用完了" in str(m["Subject"])]
    assert sorted(to(m) for m in notices) == [ITO, KATO]
    text = body_text(notices[0])
    assert "  2BXYZ001（一般NACCS）\n  2BXYZ002（一般NACCS）\n" in text
    assert "■あわせて廃止した利用者コード\n  2BXYZ\n" in text
    assert "■引き続き有効な利用者コード" not in text


def test_an_id_abolished_some_other_way_is_reported_and_left_alone(
    engine: Engine, settings: Settings
) -> None:
    seed(engine, 1, 3)
    gone = user_ids_of(0, 3)[1]
    with engine.begin() as conn:  # e.g. the registry import saw it abolished already
        conn.execute(
            update(_USER_ID)
            .where(_USER_ID.c.user_id == gone)
            .values(status="abolished", abolished_on=START - timedelta(days=3))
        )
    (applied,) = apply_due(engine, settings, TOKYO_MIDNIGHT).applied
    first, _, third = user_ids_of(0, 3)
    assert (applied.user_ids, applied.already_abolished) == ((first, third), (gone,))
    assert applied.user_codes == (first[:5],)  # its last IDs went now: the code too
    assert user(engine, gone) == ("abolished", START - timedelta(days=3))  # left as it was
    (event,) = applied_events(engine)
    assert event.detail["already_abolished"] == [gone]
    assert event.detail["user_ids"] == [first, third]


def test_a_shared_code_goes_only_with_the_last_sharing_office(
    harness_factory: HarnessFactory,
) -> None:
    """Rule 4: 1ANAC is shared by TYO01 (three IDs) and OSK01 (one).

    OSK01 applies after TYO01's application was applied: while both are open, the second
    one's ``user_code`` item collides with the first in ``uq_open_item`` at intake (reported
    separately; not the scheduler's to fix).
    """
    h = harness_factory()
    tokyo, _ = submit(h, "1ANACA0A", "1ANACA0B", "1ANAC001")
    approve(h, tokyo)
    (first,) = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT).applied
    assert (first.receipt_no, first.user_codes, first.codes_still_active) == (tokyo, (), ("1ANAC",))
    assert code(h.engine, "1ANAC") == ("active", None)
    assert can(h.engine, "1ANACA0A", "package_software", START)

    osaka, _ = submit(h, "1ANACA0C", start=LATER, sender=KATO, office="OSK01", manager=ITO)
    approve(h, osaka)
    assert apply_due(h.engine, h.settings, TOKYO_MIDNIGHT + timedelta(days=6)).applied == []
    assert can(h.engine, "1ANACA0C", "business", LATER - timedelta(days=1))
    (second,) = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT + timedelta(days=7)).applied
    assert (second.receipt_no, second.user_codes) == (osaka, ("1ANAC",))
    assert code(h.engine, "1ANAC") == ("abolished", LATER)
    assert can(h.engine, "1ANACA0A", "package_software", LATER - timedelta(days=1))
    assert not can(h.engine, "1ANACA0A", "package_software", LATER)


def test_a_dry_run_reports_exactly_and_changes_nothing(harness_factory: HarnessFactory) -> None:
    h = harness_factory()
    receipt_no, _ = submit(h, "2BXYZ001", "2BXYZ002", sender=KATO, office="OSK01", manager=ITO)
    approve(h, receipt_no)
    outbox_before = len(h.outbound())

    dry = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT, dry_run=True)
    assert dry.dry_run and [a.as_dict() for a in dry.applied] == [
        {
            "receipt_no": receipt_no,
            "office_code": "OSK01",
            "start_date": "2026-12-15",
            "user_ids": ["2BXYZ001", "2BXYZ002"],
            "already_abolished": [],
            "user_codes": ["2BXYZ"],
            "codes_still_active": [],
        }
    ]
    assert status_of(h.engine, receipt_no) == "approved"
    assert user(h.engine, "2BXYZ001") == ("active", None)
    assert code(h.engine, "2BXYZ") == ("active", None)
    assert len(h.outbound()) == outbox_before and applied_events(h.engine) == []

    # --as-of a day still ahead: previewing is fine, applying ahead of time is refused.
    assert len(apply_due(h.engine, h.settings, h.now, through=START, dry_run=True).applied) == 1
    with pytest.raises(ApplyError, match="have not come yet"):
        apply_due(h.engine, h.settings, h.now, through=START)

    real = apply_due(h.engine, h.settings, TOKYO_MIDNIGHT)
    assert [a.as_dict() for a in real.applied] == [a.as_dict() for a in dry.applied]


def test_the_apply_time_setting_and_as_of(engine: Engine, settings: Settings) -> None:
    (receipt_no,) = seed(engine, 1, 2, start=START)
    at_nine = day_time(9, 0)
    assert apply_due(engine, settings, TOKYO_MIDNIGHT, apply_time=at_nine).applied == []
    nine = TOKYO_MIDNIGHT + timedelta(hours=9)
    # --as-of an earlier day leaves this later start date alone.
    assert (
        apply_due(
            engine, settings, nine, apply_time=at_nine, through=START - timedelta(days=1)
        ).applied
        == []
    )
    assert [
        a.receipt_no for a in apply_due(engine, settings, nine, apply_time=at_nine).applied
    ] == [receipt_no]


def test_a_batch_parameter_names_exactly_its_values(engine: Engine) -> None:
    """Batches are bound as one parameter (a PostgreSQL array literal, a JSON text for
    SQLite); values that look like that syntax must still mean only themselves."""
    from db.dialect import in_one_parameter

    values = ["Q0001", "a,b", "{x}", 'say "hi"', "back\\slash", "NULL", ""]
    others = ["a", "b", "x", "{x", "hi", "Q0002", "back"]
    rows = union_all(*(select(literal(v, String).label("v")) for v in values + others)).subquery()
    seed(engine, 3, 1)
    ids = SQLModel.metadata.tables[Application.__tablename__].c.id
    with session_scope(engine) as session:
        found = session.scalars(
            select(rows.c.v).where(in_one_parameter(session, rows.c.v, values, String()))
        ).all()
        first, _second, third = session.scalars(select(ids).order_by(ids)).all()
        numbers = session.scalars(
            select(ids).where(in_one_parameter(session, ids, [third, first], Integer()))
        ).all()
    assert sorted(found) == sorted(values)
    assert sorted(numbers) == [first, third]


# --- failure isolation and concurrency ---------------------------------------------------------


def test_one_failing_application_does_not_hold_up_the_others(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    receipts = seed(engine, 5, 3)
    bad = receipts[2]
    bad_id = application_id(engine, bad)
    import mailbot.applying.run as applying
    from mailbot.applying.applied_notices import queue_notices as real_queue

    def queue(session: Any, settings: Settings, batch: Any, now: datetime) -> None:
        # The last statement of a batch: everything else of the batch has run by now.
        if bad_id in batch.ids:
            raise RuntimeError("the relay template broke")
        real_queue(session, settings, batch, now)

    monkeypatch.setattr(applying, "queue_notices", queue)
    report = apply_due(engine, settings, TOKYO_MIDNIGHT)
    assert sorted(a.receipt_no for a in report.applied) == sorted(set(receipts) - {bad})
    assert list(report.failed) == [bad] and "relay template" in report.failed[bad]
    assert status_of(engine, bad) == "approved"
    assert {user(engine, uid)[0] for uid in user_ids_of(2, 3)} == {"active"}  # all or nothing

    monkeypatch.setattr(applying, "queue_notices", real_queue)
    assert [a.receipt_no for a in apply_due(engine, settings, TOKYO_MIDNIGHT).applied] == [bad]
    assert applied_outbox(engine) == 2 * len(receipts)


def test_concurrent_appliers_apply_each_application_once(
    engine: Engine, settings: Settings
) -> None:
    receipts = seed(engine, 40, 5)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(apply_due(engine, settings, TOKYO_MIDNIGHT, batch_size=3))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    applied = [a.receipt_no for report in reports for a in report.applied]
    assert sorted(applied) == sorted(receipts)  # each once, whichever thread did it
    assert len(applied_events(engine)) == len(receipts)
    assert applied_outbox(engine) == 2 * len(receipts)
    assert (
        count(
            engine, select(func.count()).select_from(UserId).where(col(UserId.status) == "active")
        )
        == 0
    )


def test_two_appliers_finishing_a_shared_code_together_abolish_it(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 4 under concurrency: two offices' applications hold the last IDs of one code and
    two processes apply them at the same moment. Whichever commits second must see the
    first's IDs abolished and abolish the code (no write skew)."""
    seed(engine, 2, 2)
    shared, other = user_ids_of(0, 2)[0][:5], user_ids_of(1, 2)[0][:5]
    with engine.begin() as conn:  # the second application's IDs belong to the first's code
        conn.execute(update(_USER_ID).where(_USER_ID.c.user_code == other).values(user_code=shared))
    import mailbot.applying.run as applying
    from mailbot.applying.applied_notices import queue_notices as real_queue

    first_inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def queue(session: Any, settings: Settings, batch: Any, now: datetime) -> None:
        calls.extend(batch.ids)
        if len(calls) == 1:  # the first applier waits, uncommitted, inside its transaction
            first_inside.set()
            assert release.wait(30)
        real_queue(session, settings, batch, now)

    monkeypatch.setattr(applying, "queue_notices", queue)
    reports: list[Any] = []

    def run() -> None:
        reports.append(apply_due(engine, settings, TOKYO_MIDNIGHT, batch_size=1))

    first = threading.Thread(target=run)
    first.start()
    assert first_inside.wait(30)
    second = threading.Thread(target=run)
    second.start()
    second.join(1.0)
    assert second.is_alive(), "the second applier must wait for the first's code lock"
    release.set()
    first.join(30)
    second.join(30)
    applied = sorted(application_id(engine, a.receipt_no) for r in reports for a in r.applied)
    assert applied == sorted(calls) and len(calls) == 2
    assert code(engine, shared) == ("abolished", START)


# --- the date jobs -----------------------------------------------------------------------------


def test_sync_sets_one_job_per_approved_application_at_tokyo_midnight(
    engine: Engine, settings: Settings, loop_thread: LoopThread
) -> None:
    first = seed(engine, 2, 2, start=START)
    later = seed(engine, 1, 2, start=LATER, first=2)
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    context = JobContext(
        engine=engine,
        settings=settings,
        config=ScheduleConfig(),
        calendar=BusinessCalendar(),
        clock=lambda: now,
    )
    scheduler = build_scheduler(engine, settings.zone)

    async def start() -> None:
        scheduler.start(paused=True)  # stored, not run: these are tests of the store

    loop_thread.run(start())
    try:
        plan = sync_apply_jobs(scheduler, context)
        assert sorted(plan.add) == sorted(apply_job_id(r) for r in first + later)
        job = scheduler.get_job(apply_job_id(first[0]), jobstore=APPLY_STORE)
        assert job is not None and job.func_ref == "scheduler.jobs:apply_job"
        assert job.next_run_time == TOKYO_MIDNIGHT and job.misfire_grace_time is None
        assert not sync_apply_jobs(scheduler, context)  # nothing to change the second time

        with session_scope(engine) as session:
            rows, stale = list_scheduled(session, settings.zone, ScheduleConfig().apply_time, now)
        assert [(r.receipt_no, r.run_at.isoformat(), r.job_run_at is not None) for r in rows] == [
            (first[0], "2026-12-15T00:00:00+09:00", True),
            (first[1], "2026-12-15T00:00:00+09:00", True),
            (later[0], "2026-12-22T00:00:00+09:00", True),
        ]
        assert stale == []

        # An application that is no longer approved loses its job at the next sync.
        with session_scope(engine) as session:
            application = session.scalars(
                select(Application).where(col(Application.receipt_no) == later[0])
            ).one()
            application.status = "cancelled"
        assert sync_apply_jobs(scheduler, context).remove == [apply_job_id(later[0])]
        assert count(engine, select(func.count()).select_from(SchedulerJob)) == 2
    finally:
        loop_thread.run(_shutdown(scheduler))


async def _shutdown(scheduler: Any) -> None:
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)


def test_the_scheduler_applies_missed_dates_at_start_and_due_ones_by_their_job(
    engine: Engine, settings: Settings, loop_thread: LoopThread
) -> None:
    """Real time, a few seconds: the catch-up applies a start date that passed while nothing
    ran; the date job applies one whose run time comes while the scheduler runs."""
    zone = settings.zone
    run_at = (datetime.now(UTC) + timedelta(seconds=3)).astimezone(zone)
    today = run_at.date()
    (missed,) = seed(engine, 1, 3, start=today - timedelta(days=1))
    (timely,) = seed(engine, 1, 3, start=today, first=1)
    config = ScheduleConfig(apply_time=run_at.time(), sweep_seconds=3600, leader_poll_seconds=0.5)
    stop = asyncio.Event()

    async def serve() -> None:
        await run_scheduler(engine, settings, stop, config=config)

    future = asyncio.run_coroutine_threadsafe(serve(), loop_thread.loop)
    try:
        _wait_for(lambda: status_of(engine, missed) == "applied", 10, "the catch-up")
        assert status_of(engine, timely) == "approved"
        _wait_for(lambda: status_of(engine, timely) == "applied", 15, "the date job")
    finally:
        loop_thread.loop.call_soon_threadsafe(stop.set)
        future.result(15)
    via = {e.detail["via"] for e in applied_events(engine)}
    assert via == {"startup", f"job:{timely}"}
    assert len(applied_events(engine)) == 2
    # The fired date job is gone; the lock was given back.
    assert count(engine, select(func.count()).select_from(SchedulerJob)) == 0
    lock = leader_lock_for(engine)
    assert lock.try_acquire()
    lock.release()


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = clock.monotonic() + seconds
    while not predicate():
        assert clock.monotonic() < deadline, f"{what}: not within {seconds} s"
        clock.sleep(0.1)
