"""Apply benchmark (not a test): ``apply_due`` against one plain SQL UPDATE of the same rows.

    .venv/bin/python bench/apply.py [--applications 10000] [--ids-per-application 10]
                                    [--postgres URL] [--batch 5000]

The data: ``--applications`` approved applications of one office, each holding all
``--ids-per-application`` user IDs of its own user code (so every code is abolished too, rule
3), all with the same start date, which has come. Two measurements per database, each on its
own fresh copy of the same data:

(a) the baseline: one ``UPDATE user_id SET status = 'abolished', abolished_on = …`` of the
    same user ID rows, committed;
(b) ``mailbot.applying.apply_due`` exactly as mailbot runs it, nothing stubbed: the IDs, the
    codes, the applications, one audit event per application, and both notices (applicant
    and manager) per application queued in the outbox, in transactions of ``--batch``
    applications. The notices are queued as intents that the outbox renders when it first
    delivers them (after the apply committed), so rendering is not part of (b); its cost is
    in docs/performance.md.

Target: (b) >= 0.5 x (a) in speed (exit status 1 when missed). SQLite (a file in a temporary
directory, the engine mailbot uses: WAL, ``synchronous=FULL``) always; PostgreSQL when
``--postgres`` (or ``MAILBOT_TEST_POSTGRES_URL``) is reachable, in throw-away schemas. It
prints a table and writes nothing else. The figures and their analysis live in docs/performance.md.

``seed`` is also what the scheduler's crash tests use to build a large database quickly.
"""

from __future__ import annotations

import argparse
import os
import platform
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

TARGET = 0.5
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
    """apply_due as mailbot runs it, nothing stubbed."""
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


COPIES = 2  # the plain UPDATE, apply_due


@contextmanager
def sqlite_copies(workdir: Path, applications: int, per: int) -> Iterator[list[str]]:
    first = workdir / "copy0.db"
    engine = make_engine(f"sqlite:///{first}")
    upgrade(engine)
    seed(engine, applications, per)
    engine.dispose()
    paths = [first]
    for n in range(1, COPIES):
        paths.append(workdir / f"copy{n}.db")
        shutil.copyfile(first, paths[-1])
    yield [f"sqlite:///{path}" for path in paths]


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
        for url in urls:
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


def measure(urls: list[str], workdir: Path, batch: int) -> list[Timing]:
    timings = []
    for n, url in enumerate(urls):
        engine = make_engine(url)
        if n == 0:
            timings.append(baseline(engine))
        else:
            timings.append(mailbot_apply(engine, workdir / "home", batch))
        engine.dispose()
    return timings


def postgres_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


ROWS = (
    "(a) one plain UPDATE",
    "(b) apply_due: IDs, codes, audit, mail",
)


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    total_ids = args.applications * args.ids_per_application
    print(
        f"mailbot apply benchmark: {args.applications} applications, {total_ids} user IDs, "
        f"batches of {args.batch}; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}",
        flush=True,
    )
    results: list[tuple[str, list[Timing]]] = []
    workdir = Path(tempfile.mkdtemp(prefix="mailbot-bench-apply-"))
    try:
        with sqlite_copies(workdir, args.applications, args.ids_per_application) as urls:
            results.append(("SQLite", measure(urls, workdir, args.batch)))
        if not args.no_postgres and postgres_reachable(args.postgres):
            with postgres_copies(args.postgres, args.applications, args.ids_per_application) as u:
                results.append(("PostgreSQL", measure(u, workdir, args.batch)))
        elif not args.no_postgres:
            print(f"(PostgreSQL at {args.postgres} not reachable: skipped)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{'database':<11} {'run':<40} {'IDs':>7} {'seconds':>8} {'IDs/s':>9} {'x (a)':>6}")
    ok = True
    for name, timings in results:
        plain = timings[0]
        for n, (label, timing) in enumerate(zip(ROWS, timings, strict=True)):
            if timing.user_ids != total_ids:
                raise RuntimeError(f"{name} {label}: {timing.user_ids} IDs, not {total_ids}")
            ratio = plain.seconds / timing.seconds
            target = f"  target >= {TARGET}" if n == 1 else ""
            ok &= n != 1 or ratio >= TARGET
            print(
                f"{name if n == 0 else '':<11} {label:<40} {timing.user_ids:>7} "
                f"{timing.seconds:>8.2f} {timing.user_ids / timing.seconds:>9.0f} "
                f"{ratio:>6.3f}{target}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
