"""Scale benchmark (not a test): does the cost stay flat as the data grows? (issue 16, item 2)

    .venv/bin/python bench/scale.py [--ids 1000000] [--past 100000] [--requests 300]
                                    [--rounds 3] [--postgres]

Two databases built in the same run, set-based (``INSERT … SELECT`` over a generated series,
a few seconds per million rows), with the same schema and the same offices' contacts:

small  1,000 user IDs in 20 offices, no applications: the baseline;
large  ``--ids`` user IDs in ``--ids / 50`` offices (1,000,000 in 20,000), ``--past`` past
       applications (90 % applied, the rest rejected or withdrawn; each with its two IDs'
       items, three audit events, four sent notices whose bytes retention removed, two reply
       tokens and its inbound message), 100 under review and 100 approved.

Measured on each, the small one first in every round:

* the worker's cost per valid request: ``--requests`` valid requests (the same offices, the
  same IDs in both) stored, then processed by ``process_batch`` as the worker runs it; CPU
  milliseconds per request (wall time shown too). Goal: large <= 1.25 x small.
* the application page (``serve --only web``, a real HTTP GET of an under-review
  application's link), p99 of 200 requests. Goal <= 100 ms.
* ``mailbot status RECEIPT`` and ``mailbot list --status under_review``: the command run in
  this process through click (settings, engine, queries, output), p99 of 200 runs, goal
  <= 100 ms; and the whole process (Python's start-up and imports included), median of 5.
* the staff console's queue counts (its home page and every queue's heading: one COUNT per
  queue, and the shared codes still waiting), in this process, p99 of 200: goal <= 100 ms,
  as for the pages above.
* ``mailbot registry import`` of the large registry (``--ids`` rows) into a fresh SQLite
  database, a process timed from start to exit: goal <= 60 s.

It prints a table and writes nothing else. Figures and analysis: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's mailbot and bench

from sqlalchemy import Date, DateTime, Engine, bindparam, text  # noqa: E402

from bench.common import (  # noqa: E402
    INTAKE,
    POSTGRES_URL,
    child,
    clean_env,
    free_port,
    load,
    machine,
    median,
    percentile,
    postgres_reachable,
    postgres_schema,
    workdir,
)

IDS_PER_OFFICE = 50  # five user codes of ten IDs
PAGE_REQUESTS = 200
CLI_RUNS = 200
PROCESS_RUNS = 5
GOAL_WORKER = 1.25
GOAL_MS = 100.0
GOAL_IMPORT_SECONDS = 60.0
OPEN_EACH = 100  # under review, and approved


# --- the data, set-based --------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """What differs between SQLite and PostgreSQL in the seeding statements."""

    postgres: bool

    def numbers(self, count: int) -> tuple[str, str]:
        """(a prefix, a FROM clause) giving rows i = 0 … count - 1."""
        if self.postgres:
            return "", f"generate_series(0, {count - 1}) AS n(i)"
        return (
            f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count - 1}) ",
            "n",
        )

    def pad(self, expression: str, width: int) -> str:
        if self.postgres:
            return f"lpad(({expression})::text, {width}, '0')"
        return f"printf('%0{width}d', {expression})"

    def char(self, expression: str) -> str:
        return f"chr({expression})" if self.postgres else f"char({expression})"

    def json(self, literal: str) -> str:
        return f"'{literal}'::json" if self.postgres else f"'{literal}'"

    @property
    def true(self) -> str:
        return "true" if self.postgres else "1"

    @property
    def false(self) -> str:
        return "false" if self.postgres else "0"

    @property
    def no_bytes(self) -> str:
        return "'\\x'::bytea" if self.postgres else "X''"


def fill(engine: Engine, sql: Sql, table: str, columns: str, select: str, count: int) -> None:
    """``INSERT INTO table (columns) SELECT select FROM <0 … count-1 as i>``, one statement."""
    if count <= 0:
        return
    prefix, source = sql.numbers(count)
    sql_text = f"{prefix}INSERT INTO {table} ({columns}) SELECT {select} FROM {source}"
    types: dict[str, Any] = {
        "now": DateTime(),
        "past": DateTime(),
        "start": Date(),
        "received": Date(),
    }
    used = {name: type_ for name, type_ in types.items() if f":{name}" in sql_text}
    statement = text(sql_text).bindparams(*(bindparam(n, type_=t) for n, t in used.items()))
    with engine.begin() as conn:
        conn.execute(statement, {name: PARAMS[name] for name in used})


NOW = datetime.now(UTC)
START = date.today() + timedelta(days=30)
PARAMS: dict[str, Any] = {
    "now": NOW,
    "past": NOW - timedelta(days=200),
    "start": START,
    "received": (NOW - timedelta(days=200)).date(),
}


def office_code(sql: Sql, i: str) -> str:
    return f"'O' || {sql.pad(i, 5)}"


def contact(role: str, sql: Sql, office: str) -> str:
    """The office's applicant (``a``) or manager (``m``) address."""
    return f"'{role}' || {sql.pad(office, 5)} || '@o' || {sql.pad(office, 5)} || '.example.jp'"


def registry(engine: Engine, sql: Sql, offices: int) -> None:
    """``offices`` offices, two contacts each, five user codes of ten IDs each."""
    fill(
        engine,
        sql,
        "office",
        "code, company, office_name, department, updated_at",
        f"{office_code(sql, 'i')}, '株式会社' || i, '本社', '総務部', :now",
        offices,
    )
    for role in ("a", "m"):
        fill(
            engine,
            sql,
            "office_contact",
            "office_code, email",
            f"{office_code(sql, 'i')}, {contact(role, sql, 'i')}",
            offices,
        )
    codes = offices * IDS_PER_OFFICE // 10
    fill(engine, sql, "user_code", "code, status", f"{sql.pad('i', 5)}, 'active'", codes)
    # ID i: code i / 10 (five digits), ident A0 + i % 10 (netNACCS), office i / 50.
    fill(
        engine,
        sql,
        "user_id",
        "user_id, user_code, ident, office_code, network, status",
        f"{sql.pad('i / 10', 5)} || 'A0' || (i % 10), {sql.pad('i / 10', 5)}, "
        f"'A0' || (i % 10), {office_code(sql, 'i / 50')}, 'netnaccs', 'active'",
        codes * 10,
    )
    fill(
        engine,
        sql,
        "staff",
        "email, name, active, created_at",
        f"'staff' || i || '@naccs.example.jp', 'スタッフ' || i, {sql.true}, :now",
        2,
    )


def history(engine: Engine, sql: Sql, offices: int, past: int) -> None:
    """``past`` past applications of the offices (five per office at most, round robin), then
    the open ones; each with what mailbot writes for it."""
    # Application n: office n % offices, its code (n / offices) % 5, IDs A08 and A09 of it.
    office = f"(i % {offices})"
    code = f"({office} * 5 + (i / {offices}) % 5)"
    status = (
        "CASE WHEN i % 20 = 0 THEN 'rejected' WHEN i % 20 = 1 THEN 'withdrawn' ELSE 'applied' END"
    )
    application_rows(engine, sql, past, office, status, receipt_year=25, inbound_prefix="past")
    for ident, kind_ in (("A08", "user_id"), ("A09", "user_id")):
        fill(
            engine,
            sql,
            "application_item",
            "application_id, kind, key, open",
            f"i + 1, '{kind_}', {sql.pad(code, 5)} || '{ident}', "
            f"CASE WHEN i % 20 < 2 THEN {sql.false} ELSE {sql.true} END",
            past,
        )
    with engine.begin() as conn:  # the applied ones' IDs are gone
        conn.execute(
            text(
                "UPDATE user_id SET status = 'abolished', abolished_on = :start WHERE user_id IN "
                "(SELECT i.key FROM application_item i JOIN application a ON a.id = "
                "i.application_id WHERE a.status = 'applied')"
            ).bindparams(bindparam("start", type_=Date())),
            {"start": START - timedelta(days=180)},
        )
    detail = sql.json('{"via": "bench"}')
    for event in ("application_received", "approved", "applied"):
        fill(
            engine,
            sql,
            "audit_event",
            "at, application_id, event, actor, inbound_id, detail",
            f":past, i + 1, '{event}', 'mailbot', i + 1, {detail}",
            past,
        )
    for kind_, role in (
        ("receipt_complete", "a"),
        ("receipt_complete", "m"),
        ("applied", "a"),
        ("applied", "m"),
    ):
        fill(
            engine,
            sql,
            "outbound_message",
            "created_at, kind, dedupe_key, application_id, inbound_id, recipient, message_id, "
            "subject, raw, status, attempts, next_attempt_at, sent_at, raw_removed_at",
            f":past, '{kind_}', 'bench:' || i || ':{kind_}:{role}', i + 1, i + 1, "
            f"{contact(role, sql, office)}, '<{kind_}.' || i || '.{role}@bench>', '件名', "
            f"{sql.no_bytes}, 'sent', 1, :past, :past, :now",
            past,
        )
    for role in ("a", "m"):
        fill(
            engine,
            sql,
            "token",
            "nonce, purpose, application_id, recipient, version, created_at, expires_at",
            f"'bench-{role}-' || i, 'applicant', i + 1, {contact(role, sql, office)}, 1, "
            ":past, :past",
            past,
        )


def application_rows(
    engine: Engine,
    sql: Sql,
    count: int,
    office: str,
    status: str,
    *,
    receipt_year: int,
    inbound_prefix: str,
    first: int = 0,
) -> None:
    """``count`` applications (ids first + 1 …, receipt serials 1 …) and the inbound messages
    they came from (ids first + 1 …, as the tables start empty)."""
    number = f"(i + {first})"
    envelope_to = sql.json('["' + INTAKE + '"]')
    fill(
        engine,
        sql,
        "inbound_message",
        "received_at, channel, envelope_from, envelope_to, message_id, sha256, size, raw, "
        "status, kind, attempts, processed_at, raw_removed_at",
        f":past, 'smtp', {contact('a', sql, office)}, {envelope_to}, "
        f"'<{inbound_prefix}' || i || '@bench>', '{inbound_prefix}' || {sql.pad(number, 60)}, "
        f"4096, {sql.no_bytes}, 'done', 'accepted', 1, :past, :now",
        count,
    )
    fill(
        engine,
        sql,
        "application",
        "receipt_no, status, version, office_code, sender, applicant_name, applicant_email, "
        "applicant_phone, manager_name, manager_email, reason, remarks, desired_start_date, "
        "proposed_start_date, start_date, received_at, received_on, inbound_id, "
        "shared_codes_pending, updated_at",
        f"'{receipt_year}' || {sql.pad('i % 9999 + 1', 4)} || {sql.char('65 + i / 9999')}, "
        f"{status}, 2, {office_code(sql, office)}, {contact('a', sql, office)}, '申込 太郎', "
        f"{contact('a', sql, office)}, '03-0000-0000', '管理 花子', {contact('m', sql, office)}, "
        f"'事業所の統合', '', :start, :start, :start, :past, :received, {number} + 1, "
        f"{sql.json('{}')}, :past",
        count,
    )


def open_applications(engine: Engine, sql: Sql, offices: int, past: int) -> None:
    """100 under review (naming an ID A07) and 100 approved (an ID A06)."""
    total = 2 * OPEN_EACH
    office = f"(i % {offices})"
    application_rows(
        engine,
        sql,
        total,
        office,
        f"CASE WHEN i < {OPEN_EACH} THEN 'under_review' ELSE 'approved' END",
        receipt_year=NOW.year % 100,
        inbound_prefix="open",
        first=past,
    )
    # Open items must not collide with the requests' IDs (A00-A05) nor each other.
    fill(
        engine,
        sql,
        "application_item",
        "application_id, kind, key, open",
        f"{past} + i + 1, 'user_id', {sql.pad(f'{office} * 5 + (i / {offices}) % 5', 5)} || "
        f"CASE WHEN i < {OPEN_EACH} THEN 'A07' ELSE 'A06' END, "
        f"{sql.true}",
        total,
    )
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO receipt_counter (year, issued) VALUES (:year, :issued)"),
            {"year": NOW.year, "issued": total},
        )


def build(url: str, offices: int, past: int) -> float:
    """Schema and data; seconds it took."""
    from db.engine import make_engine
    from db.migrate import upgrade

    began = time.perf_counter()
    engine = make_engine(url)
    try:
        upgrade(engine)
        sql = Sql(postgres=engine.dialect.name == "postgresql")
        registry(engine, sql, offices)
        history(engine, sql, offices, past)
        open_applications(engine, sql, offices, past)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - began


# --- the measurements -----------------------------------------------------------------------


def request_of(k: int, round_no: int) -> tuple[str, bytes]:
    """Round ``round_no``'s k-th valid request (k < 200): ID A0x of a code of office k % 20,
    from that office's applicant; the same in the small and the large database."""
    from bench.common import request_message, start_date

    office = k % 20
    code = office * 5 + (k // 20) % 5
    user_id = f"{code:05d}A0{2 * round_no + k // 100}"
    applicant = f"a{office:05d}@o{office:05d}.example.jp"
    raw = request_message(
        user_id,
        start_date(),
        applicant=applicant,
        manager=f"m{office:05d}@o{office:05d}.example.jp",
        office=f"O{office:05d}",
    )
    return applicant, raw


@dataclass(frozen=True)
class WorkerCost:
    cpu_ms: float  # CPU per request
    wall_ms: float


def worker_cost(url: str, home: Path, requests: int, round_no: int) -> WorkerCost:
    """Store ``requests`` valid requests, process them as the worker does; cost per request."""
    from bench.common import start_date
    from db.engine import make_engine
    from mailbot.calendar import BusinessCalendar
    from mailbot.config import load_settings
    from mailbot.gateway.store import Incoming, store_messages
    from mailbot.intake import IntakeContext
    from mailbot.keys import ensure_signing_key
    from mailbot.worker import process_batch

    settings = load_settings(home=home, database_url=url)
    engine = make_engine(url)
    try:
        ensure_signing_key(engine, settings)
        with engine.begin() as conn:  # the registration date the requests ask for
            conn.execute(
                text(
                    "INSERT INTO registration_date (day) SELECT :day WHERE NOT EXISTS "
                    "(SELECT 1 FROM registration_date WHERE day = :day)"
                ).bindparams(bindparam("day", type_=Date())),
                {"day": start_date()},
            )
        mails = [request_of(k, round_no) for k in range(requests)]
        store_messages(engine, [Incoming(raw, "smtp", sender, [INTAKE]) for sender, raw in mails])
        ctx = IntakeContext(settings=settings, calendar=BusinessCalendar())
        began, cpu = time.perf_counter(), time.process_time()
        handled = 0
        while batch := process_batch(engine, ctx, datetime.now(UTC)):
            handled += batch
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        with engine.connect() as conn:
            accepted = conn.execute(
                text(
                    "SELECT count(*) FROM inbound_message WHERE kind = 'accepted' AND status = 'done' AND raw_removed_at IS NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    if handled != requests or accepted != requests * (round_no + 1):
        raise RuntimeError(
            f"{handled} processed, {accepted} accepted in all; expected every request accepted"
        )
    return WorkerCost(1000 * cpu / requests, 1000 * wall / requests)


def page_p99(url: str, home: Path) -> tuple[float, float]:
    """p99 milliseconds of GET of an under-review application's page, over real HTTP; and of
    GET /metrics (no goal: shown because it counts over whole tables)."""
    from db.engine import make_engine, session_scope
    from mailbot.config import load_settings
    from mailbot.keys import ensure_signing_key
    from mailbot.notify import status_url

    settings = load_settings(home=home, database_url=url)
    engine = make_engine(url)
    receipt = f"{NOW.year % 100:02d}0001A"
    ensure_signing_key(engine, settings)  # as `mailbot db upgrade` leaves it
    with session_scope(engine) as session:
        link = status_url(session, settings, receipt, datetime.now(UTC))
    engine.dispose()
    port = free_port()
    env = clean_env(home=str(home), database_url=url, web_listen=f"127.0.0.1:{port}")
    path = link.removeprefix(settings.base_url)
    with child(["-m", "mailbot", "serve", "--only", "web"], env=env, cwd=home):
        page = f"http://127.0.0.1:{port}{path}"
        _wait_for_http(page)
        times = []
        for n in range(PAGE_REQUESTS + 10):
            began = time.perf_counter()
            with urllib.request.urlopen(page, timeout=30) as response:
                body = response.read()
            if n >= 10:
                times.append(time.perf_counter() - began)
            if response.status != 200 or receipt.encode() not in body:
                raise RuntimeError(f"the page answered {response.status} without {receipt}")
        metrics = []
        for _ in range(50):
            began = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
                response.read()
            metrics.append(time.perf_counter() - began)
    return 1000 * percentile(times, 0.99), 1000 * percentile(metrics, 0.99)


def _wait_for_http(page: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(page, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cli_p99(url: str, home: Path, *args: str) -> float:
    """p99 milliseconds of a ``mailbot`` command run in this process (click's runner)."""
    from click.testing import CliRunner

    from mailbot.cli import cli

    runner = CliRunner()
    env = {"MAILBOT_HOME": str(home), "MAILBOT_DATABASE_URL": url}

    def run() -> None:
        result = runner.invoke(cli, list(args), env=env)
        if result.exit_code != 0:
            raise RuntimeError(f"mailbot {' '.join(args)}: {result.output}")

    return in_process_p99(run)


def in_process_p99(run: Callable[[], object]) -> float:
    """p99 milliseconds of ``run()`` over CLI_RUNS calls, after 3 not counted."""
    times = []
    for n in range(CLI_RUNS + 3):
        # A command runs once in a fresh process; 200 in this one leave garbage whose
        # collection (a pause of ~80 ms every thirty runs) is not the command's cost.
        gc.collect()
        began = time.perf_counter()
        run()
        if n >= 3:
            times.append(time.perf_counter() - began)
    return 1000 * percentile(times, 0.99)


def console_counts_p99(url: str, home: Path) -> float:
    """p99 milliseconds of the console's queue counts (what its home page shows), in process."""
    from sqlmodel import Session

    from db.engine import make_engine
    from mailbot.calendar import BusinessCalendar
    from mailbot.config import load_settings
    from mailbot.console.queues import counts

    settings = load_settings(home=home, database_url=url)
    engine = make_engine(url)
    calendar = BusinessCalendar()

    def run() -> None:
        with Session(engine) as session:
            counts(session, calendar, NOW.date(), settings.console_risk_business_days)

    try:
        return in_process_p99(run)
    finally:
        engine.dispose()


def process_ms(url: str, home: Path, *args: str) -> float:
    """Median milliseconds of ``python -m mailbot ARGS`` as a process, start-up included."""
    from bench.common import mailbot

    env = clean_env(home=str(home), database_url=url)
    times = []
    for _ in range(PROCESS_RUNS):
        began = time.perf_counter()
        mailbot(home, env, *args)
        times.append(time.perf_counter() - began)
    return 1000 * median(times)


def registry_import_seconds(home: Path, offices: int) -> float:
    """A fresh SQLite database, then ``mailbot registry import`` of the registry's CSV, timed
    as the operator runs it (a process, start-up included)."""
    from bench.common import mailbot

    home.mkdir(parents=True, exist_ok=True)
    csv_path = home / "registry.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("office_code,company,office,department,contact_emails,user_id\n")
        for office in range(offices):
            contacts = (
                f"a{office:05d}@o{office:05d}.example.jp;m{office:05d}@o{office:05d}.example.jp"
            )
            head = f"O{office:05d},株式会社{office},本社,総務部,{contacts},"
            out.writelines(
                f"{head}{code:05d}A0{ident}\n"
                for code in range(office * 5, office * 5 + 5)
                for ident in range(10)
            )
    env = clean_env(home=str(home))
    mailbot(home, env, "db", "upgrade")
    began = time.perf_counter()
    mailbot(home, env, "registry", "import", str(csv_path))
    return time.perf_counter() - began


# --- the report -----------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_schema() as url:
            yield url
    else:
        yield f"sqlite:///{home}/mailbot.db"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--past", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per round, at most 200")
    parser.add_argument("--rounds", type=int, default=3, help="at most 3")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--skip-import", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 200 or not 1 <= args.rounds <= 3:
        parser.error("--requests is 1-200 and --rounds 1-3 (the free IDs of the offices used)")
    kind = "postgres" if args.postgres else "sqlite"
    if kind == "postgres" and not postgres_reachable(POSTGRES_URL):
        parser.error(f"PostgreSQL at {POSTGRES_URL} is not reachable")
    print(f"mailbot scale benchmark ({kind}); {machine()}", flush=True)
    sizes = {"small": (1000 // IDS_PER_OFFICE, 0), "large": (args.ids // IDS_PER_OFFICE, args.past)}
    rows: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        homes = {
            name: stack.enter_context(workdir(f"mailbot-bench-scale-{name}-")) for name in sizes
        }
        urls = {name: stack.enter_context(database(kind, homes[name])) for name in sizes}
        for name, (offices, past) in sizes.items():
            seconds = build(urls[name], offices, past)
            print(
                f"  built {name}: {offices * IDS_PER_OFFICE:,} IDs in {offices:,} offices, "
                f"{past:,} past applications in {seconds:.1f} s (load {load()})",
                flush=True,
            )
        # The page and the commands first: the worker's rounds below add 200 applications
        # under review each, and the queue is to be the seeded 100 (a real one's size).
        receipt = f"{NOW.year % 100:02d}0001A"
        for name in sizes:
            page, metrics = page_p99(urls[name], homes[name])
            rows[name] = {
                "page": page,
                "metrics": metrics,
                "status": cli_p99(urls[name], homes[name], "status", receipt),
                "list": cli_p99(urls[name], homes[name], "list", "--status", "under_review"),
                "console": console_counts_p99(urls[name], homes[name]),
                "status_process": process_ms(urls[name], homes[name], "status", receipt),
                "list_process": process_ms(
                    urls[name], homes[name], "list", "--status", "under_review"
                ),
            }
            print(f"  measured {name} (load {load()})", flush=True)
        costs: dict[str, list[WorkerCost]] = {name: [] for name in sizes}
        for round_no in range(args.rounds):
            for name in sizes:
                costs[name].append(worker_cost(urls[name], homes[name], args.requests, round_no))
            print(
                f"  round {round_no + 1}: worker ms/request CPU small "
                f"{costs['small'][-1].cpu_ms:.2f}, large {costs['large'][-1].cpu_ms:.2f} "
                f"(load {load()})",
                flush=True,
            )
        for name in sizes:
            rows[name]["worker"] = median([c.cpu_ms for c in costs[name]])
            rows[name]["worker_wall"] = median([c.wall_ms for c in costs[name]])
    if not args.skip_import and kind == "sqlite":
        with workdir("mailbot-bench-import-") as home:
            rows["small"]["import"] = registry_import_seconds(home / "small", sizes["small"][0])
            rows["large"]["import"] = registry_import_seconds(home / "large", sizes["large"][0])
    return report(rows)


LINES: list[tuple[str, str, str, Callable[[float, float], bool] | None]] = [
    (
        "worker",
        "worker CPU ms per valid request",
        "<= 1.25 x small",
        lambda s, big: big <= GOAL_WORKER * s,
    ),
    ("worker_wall", "  (wall ms per valid request)", "", None),
    ("page", "application page p99 ms", "<= 100 ms", lambda s, big: big <= GOAL_MS),
    ("metrics", "  GET /metrics p99 ms", "", None),
    ("status", "mailbot status p99 ms (in process)", "<= 100 ms", lambda s, big: big <= GOAL_MS),
    (
        "list",
        "mailbot list --status under_review p99 ms",
        "<= 100 ms",
        lambda s, big: big <= GOAL_MS,
    ),
    (
        "console",
        "console queue counts p99 ms (in process)",
        "<= 100 ms",
        lambda s, big: big <= GOAL_MS,
    ),
    ("status_process", "  mailbot status, whole process ms", "", None),
    ("list_process", "  mailbot list, whole process ms", "", None),
    (
        "import",
        "registry import seconds (SQLite)",
        "<= 60 s",
        lambda s, big: big <= GOAL_IMPORT_SECONDS,
    ),
]


def report(rows: dict[str, dict[str, float]]) -> int:
    print()
    print(f"{'measurement':<44} {'small':>9} {'large':>9} {'x small':>8}  {'goal':<16} result")
    missed = []
    for key, label, goal, check in LINES:
        if key not in rows["large"]:
            continue
        small, big = rows["small"][key], rows["large"][key]
        result = "" if check is None else ("met" if check(small, big) else "MISSED")
        if result == "MISSED":
            missed.append(label.strip())
        print(f"{label:<44} {small:>9.2f} {big:>9.2f} {big / small:>8.2f}  {goal:<16} {result}")
    print(f"(load average at the end {load()})")
    print("GOAL MISSED: " + "; ".join(missed) if missed else "Every goal met.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
