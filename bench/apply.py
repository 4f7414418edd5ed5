"""Apply-day benchmark (not a test): 10,000 applications due on one date (issue 16, item 4).

    .venv/bin/python bench/apply.py [--applications 10000] [--ids-per-application 10]
                                    [--postgres URL] [--no-postgres] [--batch 5000]

The data: ``--applications`` approved applications of one office, each holding all
``--ids-per-application`` user IDs of its own user code (so every code is abolished too, rule
3), all with the same start date; applicant and manager differ, so two notices each. Per
database, each case on its own fresh copy of the same data:

(a) the baseline: one plain ``UPDATE user_id SET status = 'abolished', abolished_on = …`` of
    the same user ID rows, committed;
(b) ``apply_due`` alone, as mailbot runs it (the IDs, the codes, the applications, an audit
    event each with its IDs, both notices queued as outbox intents);
(c) the day itself: a real ``mailbot serve`` (every role, a Maildir relay) started before the
    apply time (``MAILBOT_APPLY_TIME`` set to a minute ahead, the start date that day): from
    the apply moment, the seconds until every application is applied (goal <= 30 s) and
    until every notice is in the Maildir (goal <= 300 s), rendered by the outbox on the way.

SQLite (a file in a temporary directory, the engine mailbot uses: WAL, ``synchronous=FULL``)
always; PostgreSQL when ``--postgres`` (or ``MAILBOT_TEST_POSTGRES_URL``) is reachable, in
throw-away schemas. It prints a table and writes nothing else (exit status 1 when a goal is
missed). The figures and their analysis live in docs/performance.md.

``seed`` is also what the scheduler's crash tests use to build a large database quickly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's mailbot

from sqlalchemy import Engine, insert, text  # noqa: E402
from sqlmodel import col  # noqa: E402

from db.engine import make_engine, session_scope  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import (  # noqa: E402
    APPROVED,
    Application,
    ApplicationItem,
    Office,
    OfficeContact,
    UserCode,
    UserId,
)

OFFICE = "BENCH1"
APPLICANT = "applicant@bench.example.co.jp"
MANAGER = "manager@bench.example.co.jp"
START = date(2026, 12, 15)
# 00:30 in Tokyo on the start date: it has come.
NOW = datetime(2026, 12, 14, 15, 30, tzinfo=UTC)
CHUNK = 5000


# --- the data --------------------------------------------------------------------------------


def receipt_no(n: int, year: int = 26) -> str:
    """The n-th receipt number (0-based): YY0001A … YY9999A, YY0001B, …"""
    letter, serial = divmod(n, 9999)
    return f"{year:02d}{serial + 1:04d}{chr(ord('A') + letter)}"


def user_ids_of(n: int, per_application: int) -> list[str]:
    """Application n's IDs: all of user code ``Q`` + 4 base-36 digits (so any n fits)."""
    code = "Q" + _base36(n, 4)
    return [f"{code}{_base36(i, 3)}" for i in range(per_application)]


def _base36(n: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    for _ in range(width):
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out


def seed(
    engine: Engine,
    applications: int,
    per_application: int,
    *,
    start: date = START,
    first: int = 0,
    status: str = APPROVED,
) -> list[str]:
    """Write the registry and approved applications ``first`` … ``first + applications - 1``
    with bulk inserts (not via intake); their receipt numbers."""
    received = start - timedelta(days=14)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        if session.get(Office, OFFICE) is None:
            session.execute(
                insert(Office),
                [
                    {
                        "code": OFFICE,
                        "company": "ベンチ株式会社",
                        "office_name": "本社",
                        "department": "",
                        "updated_at": now,
                    }
                ],
            )
            session.execute(
                insert(OfficeContact),
                [
                    {"office_code": OFFICE, "email": APPLICANT},
                    {"office_code": OFFICE, "email": MANAGER},
                ],
            )
        for begin in range(first, first + applications, CHUNK):
            numbers = range(begin, min(begin + CHUNK, first + applications))
            ids = {n: user_ids_of(n, per_application) for n in numbers}
            session.execute(
                insert(UserCode), [{"code": ids[n][0][:5], "status": "active"} for n in numbers]
            )
            session.execute(
                insert(UserId),
                [
                    {
                        "user_id": uid,
                        "user_code": uid[:5],
                        "ident": uid[5:],
                        "office_code": OFFICE,
                        "network": "general",
                        "status": "active",
                    }
                    for n in numbers
                    for uid in ids[n]
                ],
            )
            rows = session.execute(
                insert(Application).returning(col(Application.id), col(Application.receipt_no)),
                [
                    {
                        "receipt_no": receipt_no(n),
                        "status": status,
                        "version": 2,
                        "office_code": OFFICE,
                        "sender": APPLICANT,
                        "applicant_name": "申込 太郎",
                        "applicant_email": APPLICANT,
                        "applicant_phone": "03-0000-0000",
                        "manager_name": "管理 花子",
                        "manager_email": MANAGER,
                        "reason": "ベンチマーク",
                        "remarks": "",
                        "desired_start_date": start,
                        "proposed_start_date": start,
                        "start_date": start,
                        "received_at": now,
                        "received_on": received,
                        "shared_codes_pending": {},
                        "decided_by": "staff@bench.example.jp",
                        "decided_at": now,
                        "updated_at": now,
                    }
                    for n in numbers
                ],
            ).all()
            by_receipt = {no: app_id for app_id, no in rows}
            session.execute(
                insert(ApplicationItem),
                [
                    {
                        "application_id": by_receipt[receipt_no(n)],
                        "kind": kind,
                        "key": key,
                        "open": True,
                    }
                    for n in numbers
                    for kind, key in [
                        *(("user_id", uid) for uid in ids[n]),
                        ("user_code", ids[n][0][:5]),
                    ]
                ],
            )
    return [receipt_no(n) for n in range(first, first + applications)]


# --- the runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    seconds: float
    user_ids: int


def baseline(engine: Engine) -> Timing:
    began = time.perf_counter()
    with engine.begin() as conn:
        changed = conn.execute(
            text(
                "UPDATE user_id SET status = 'abolished', abolished_on = :day "
                "WHERE status = 'active'"
            ),
            {"day": START},
        ).rowcount
    return Timing(time.perf_counter() - began, changed)


def mailbot_apply(engine: Engine, home: Path, batch: int) -> Timing:
    """(b): apply_due as mailbot runs it, nothing stubbed."""
    from mailbot.applying import apply_due
    from mailbot.config import load_settings

    # Applying signs nothing (its notices are intents, rendered by the outbox): no key needed.
    settings = load_settings(home=home, database_url=engine.url.render_as_string(False))
    began = time.perf_counter()
    report = apply_due(engine, settings, NOW, batch_size=batch)
    seconds = time.perf_counter() - began
    if report.failed:
        raise RuntimeError(f"apply_due failed for {len(report.failed)} applications")
    return Timing(seconds, report.user_id_count)


@dataclass(frozen=True)
class Day:
    applied_seconds: float  # from the apply moment until every application was applied
    delivered_seconds: float  # … until every notice was in the Maildir
    notices: int
    scheduled_seconds: float  # serve's start until every date job was in the jobstore
    load: str


def apply_day(url: str, home: Path, applications: int, per: int) -> Day:
    """(c): serve started before the apply time, measured from the apply moment."""
    from zoneinfo import ZoneInfo

    from bench.common import child, clean_env, count_files, free_port, load

    zone = ZoneInfo("Asia/Tokyo")
    # The next whole minute at least LEAD_SECONDS ahead: serve starts and its sweep schedules
    # a date job per application meanwhile, as on the evening before.
    moment = datetime.now(zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while (moment - datetime.now(zone)).total_seconds() < LEAD_SECONDS:
        moment += timedelta(minutes=1)
    engine = make_engine(url)
    upgrade(engine)
    seed(engine, applications, per, start=moment.date())
    # Statistics, as a database that filled up over weeks has them (autovacuum's analyze):
    # PostgreSQL planning the apply over freshly bulk-loaded tables without any took 150 s.
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = clean_env(
        home=str(home),
        database_url=url,
        smtp_listen=f"127.0.0.1:{port}",
        web_listen=f"127.0.0.1:{free_port()}",
        apply_time=moment.strftime("%H:%M"),
    )
    expected = 2 * applications
    new = home / "sent" / "new"
    with child(
        ["-m", "mailbot", "serve"], env=env, cwd=home, port=port, log=home / "serve.log"
    ) as serve:
        started = time.perf_counter()
        engine = make_engine(url)
        try:  # the evening before: the sweep gives every application its date job
            while _date_jobs(engine) < applications and datetime.now(zone) < moment:
                time.sleep(0.2)
            scheduled = time.perf_counter() - started
            if _date_jobs(engine) < applications:
                raise RuntimeError(
                    f"{_date_jobs(engine)} of {applications} date jobs scheduled "
                    f"{scheduled:.0f} s after serve started, when the day began; "
                    "raise LEAD_SECONDS"
                )
        finally:
            engine.dispose()
        while datetime.now(zone) < moment:
            time.sleep(0.05)
        began = time.perf_counter()
        engine = make_engine(url)
        try:
            applied = None
            while True:
                if applied is None and _applied(engine) == applications:
                    applied = time.perf_counter() - began
                if applied is not None and count_files(new) >= expected:
                    break
                if serve.poll() is not None or time.perf_counter() - began > DAY_TIMEOUT_SECONDS:
                    raise RuntimeError(
                        f"after {time.perf_counter() - began:.0f} s: {_applied(engine)} applied, "
                        f"{count_files(new)} of {expected} notices delivered"
                    )
                time.sleep(0.1)
            delivered = time.perf_counter() - began
        finally:
            engine.dispose()
    _check_notices(new, expected)
    return Day(applied, delivered, expected, scheduled, load())


# serve starts this long before the day (at least): its first sweep schedules a date job per
# application, one jobstore row each.
LEAD_SECONDS = 150.0
DAY_TIMEOUT_SECONDS = 900.0


def _date_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM apscheduler_jobs WHERE id LIKE 'apply:%'")
            ).scalar_one()
        )


def _applied(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM application WHERE status = 'applied'")
            ).scalar_one()
        )


def _check_notices(folder: Path, expected: int) -> None:
    """Every file an applied notice, each once: a fast wrong answer is not a result."""
    import email
    import email.policy

    names = os.listdir(folder)
    subjects = {
        str(
            email.message_from_bytes((folder / name).read_bytes(), policy=email.policy.default)[
                "Subject"
            ]
        )
        for name in names[:: max(1, len(names) // 200)]
    }
    if len(names) != expected or not all("適用" in s or "完了" in s for s in subjects):
        raise RuntimeError(
            f"{len(names)} files (expected {expected}); subjects {sorted(subjects)[:3]}"
        )


COPIES = 3  # the plain UPDATE, apply_due alone, the day under serve


@contextmanager
def sqlite_copies(workdir: Path, applications: int, per: int) -> Iterator[list[str]]:
    first = workdir / "copy0.db"
    engine = make_engine(f"sqlite:///{first}")
    upgrade(engine)
    seed(engine, applications, per)
    engine.dispose()
    paths = [first]
    for n in range(1, COPIES - 1):
        paths.append(workdir / f"copy{n}.db")
        shutil.copyfile(first, paths[-1])
    yield [f"sqlite:///{path}" for path in paths] + [f"sqlite:///{workdir / 'day' / 'mailbot.db'}"]


@contextmanager
def postgres_copies(base_url: str, applications: int, per: int) -> Iterator[list[str]]:
    import psycopg

    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(COPIES)]
    separator = "&" if "?" in base_url else "?"
    urls = [f"{base_url}{separator}options={quote(f'-csearch_path={s}')}" for s in schemas]
    with psycopg.connect(base_url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        for url in urls[:-1]:  # the day's copy is seeded for its own start date
            engine = make_engine(url)
            upgrade(engine)
            seed(engine, applications, per)
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
            engine.dispose()
        yield urls
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


@dataclass(frozen=True)
class Result:
    database: str
    plain: Timing
    alone: Timing
    day: Day


def measure(name: str, urls: list[str], workdir: Path, args: argparse.Namespace) -> Result:
    engine = make_engine(urls[0])
    plain = baseline(engine)
    engine.dispose()
    engine = make_engine(urls[1])
    alone = mailbot_apply(engine, workdir / "home", args.batch)
    engine.dispose()
    day = apply_day(urls[2], workdir / f"day-{name}", args.applications, args.ids_per_application)
    return Result(name, plain, alone, day)


def main(argv: list[str] | None = None) -> int:
    from bench.common import machine, postgres_reachable
    from mailbot.applying import DEFAULT_BATCH

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applications", type=int, default=10_000)
    parser.add_argument("--ids-per-application", type=int, default=10)
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="applications per transaction"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "MAILBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    total_ids = args.applications * args.ids_per_application
    print(
        f"mailbot apply-day benchmark: {args.applications} applications, {total_ids} user IDs, "
        f"{2 * args.applications} notices, batches of {args.batch}; {machine()}",
        flush=True,
    )
    results: list[Result] = []
    workdir = Path(tempfile.mkdtemp(prefix="mailbot-bench-apply-"))
    try:
        if not args.no_sqlite:
            with sqlite_copies(workdir, args.applications, args.ids_per_application) as urls:
                results.append(measure("SQLite", urls, workdir, args))
                print(f"  SQLite done (load {results[-1].day.load})", flush=True)
        if not args.no_postgres and postgres_reachable(args.postgres):
            with postgres_copies(args.postgres, args.applications, args.ids_per_application) as u:
                results.append(measure("PostgreSQL", u, workdir, args))
        elif not args.no_postgres:
            print(f"(PostgreSQL at {args.postgres} not reachable: skipped)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"{'database':<11} {'(a) UPDATE s':>12} {'(b) apply s':>12} {'x (a)':>6} "
        f"{'(c) applied s':>14} {'goal':>6} {'delivered s':>12} {'goal':>6} {'ms/notice':>10}  result"
    )
    ok = True
    for r in results:
        for timing in (r.plain, r.alone):
            if timing.user_ids != total_ids:
                raise RuntimeError(f"{r.database}: {timing.user_ids} IDs, not {total_ids}")
        met = r.day.applied_seconds <= GOAL_APPLIED and r.day.delivered_seconds <= GOAL_DELIVERED
        ok &= met
        per_notice = 1000 * (r.day.delivered_seconds - r.day.applied_seconds) / r.day.notices
        print(
            f"{r.database:<11} {r.plain.seconds:>12.2f} {r.alone.seconds:>12.2f} "
            f"{r.plain.seconds / r.alone.seconds:>6.3f} {r.day.applied_seconds:>14.1f} "
            f"{'<=' + str(int(GOAL_APPLIED)):>6} {r.day.delivered_seconds:>12.1f} "
            f"{'<=' + str(int(GOAL_DELIVERED)):>6} {per_notice:>10.2f}  {'met' if met else 'MISSED'}"
            f"  (date jobs in {r.day.scheduled_seconds:.0f} s; load {r.day.load})"
        )
    return 0 if ok else 1


GOAL_APPLIED = 30.0
GOAL_DELIVERED = 300.0


if __name__ == "__main__":
    sys.exit(main())
