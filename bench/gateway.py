"""Gateway benchmark (not a test): does the gateway wait for the worker? (issue 16, item 1)

    .venv/bin/python bench/gateway.py [--messages 3000] [--sessions 8] [--backlog 3000]
                                      [--rounds 1] [--cases serve,split,postgres]

The client is Postfix's own load generator, ``smtp-source`` (Debian's postfix package): 8
sessions at once, a new connection per message, 4 KB of body, every message distinct. It runs
against a bare aiosmtpd sink (the baseline, measured in each round) and against mailbot while
a worker drains a backlog of valid requests, each request its receipt notices to the Maildir:

sink      aiosmtpd with mailbot's options, a handler that keeps nothing: 1.00 x
alone     ``serve --only smtp`` with no worker anywhere (for reference: the gateway's own pace)
serve     ``serve`` with every role in one process, SQLite: goal >= 0.30 x
split     ``serve --only smtp`` beside ``serve --only worker,outbox``, SQLite: goal >= 0.45 x
postgres  two ``serve --only smtp`` (smtp-source split over them) beside one
          ``serve --only worker,outbox``, PostgreSQL: figure reported

Before each mailbot case ``--backlog`` valid requests are stored as pending (the worker starts
on them as the processes start), so the worker is busy for the whole measurement; the bench
checks that it still was at the end, and shows how fast it drained meanwhile. smtp-source's
client is 127.0.0.1, configured as a trusted relay (as Postfix in front is), so the gateway's
per-client limits do not measure themselves. Figures and analysis: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's mailbot and bench

from bench.common import (  # noqa: E402
    APPLICANT,
    CLIENT_ADDRESS,
    INTAKE,
    POSTGRES_URL,
    bench_user_id,
    child,
    clean_env,
    free_port,
    load,
    machine,
    median,
    postgres_reachable,
    postgres_schema,
    prepare_home,
    request_message,
    sink,
    smtp_source,
    start_date,
    workdir,
)

GOALS = {"serve": 0.30, "split": 0.45}
CASES = ("alone", "serve", "split", "postgres")
WARM_UP = 200


@dataclass(frozen=True)
class Measured:
    rate: float  # 250s per second
    server_cpu: float | None  # share of one core the mailbot processes used
    drained: float | None  # requests the worker finished per second meanwhile
    pending_after: int | None  # requests still waiting when smtp-source was done
    load: str


# --- a mailbot case -------------------------------------------------------------------------


def store_backlog(url: str, count: int) -> None:
    """``count`` valid requests stored as pending, as the gateway would have stored them."""
    from db.engine import make_engine
    from mailbot.gateway.store import Incoming, store_messages

    engine = make_engine(url)
    start = start_date()
    try:
        for first in range(0, count, 500):
            store_messages(
                engine,
                [
                    Incoming(request_message(bench_user_id(n), start), "smtp", APPLICANT, [INTAKE])
                    for n in range(first, min(first + 500, count))
                ],
            )
    finally:
        engine.dispose()


def worker_counts(url: str) -> tuple[int, int]:
    """(done, pending) of the backlog's valid requests (smtp-source's own messages, refused
    as an outsider's, cost the worker little and are not counted)."""
    query = (
        "SELECT coalesce(sum(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) FROM inbound_message "
        f"WHERE envelope_from = '{APPLICANT}'"
    )
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        ) as db:
            done, pending = db.execute(query).fetchone()
        return int(done), int(pending)
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def wait_until_draining(url: str, timeout: float = 60.0) -> None:
    """Wait for the worker's first commits: a process still starting up measures nothing."""
    deadline = time.monotonic() + timeout
    while worker_counts(url)[0] == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker processed nothing within {timeout} s")
        time.sleep(0.1)


@contextlib.contextmanager
def mailbot_processes(
    case: str, home: Path, url: str, backlog: int
) -> Iterator[tuple[list[int], list[int]]]:
    """Start the case's processes on a prepared database; (SMTP ports, pids)."""
    gateways = 2 if case == "postgres" else 1
    ports = [free_port() for _ in range(gateways)]
    base = {"home": str(home), "database_url": url, "trusted_relays": CLIENT_ADDRESS}
    env = clean_env(**base)
    prepare_home(home, env, [bench_user_id(n) for n in range(max(backlog, 1))], start_date())
    if backlog:
        store_backlog(url, backlog)
    with contextlib.ExitStack() as stack:
        pids = []
        # What each gateway process runs (None: every role).
        roles: dict[str, list[str | None]] = {
            "serve": [None],
            "alone": ["smtp"],
            "split": ["smtp"],
            "postgres": ["smtp", "smtp"],
        }
        for n, only in enumerate(roles[case]):
            process = stack.enter_context(
                child(
                    ["-m", "mailbot", "serve", *(["--only", only] if only else [])],
                    env=clean_env(
                        **base,
                        smtp_listen=f"127.0.0.1:{ports[n]}",
                        web_listen=f"127.0.0.1:{free_port()}",
                    ),
                    cwd=home,
                    port=ports[n],
                    log=home / f"serve-{n}.log",
                )
            )
            pids.append(process.pid)
        if case in ("split", "postgres"):
            worker = stack.enter_context(
                child(
                    ["-m", "mailbot", "serve", "--only", "worker,outbox"],
                    env=env,
                    cwd=home,
                    log=home / "worker.log",
                )
            )
            pids.append(worker.pid)
        yield ports, pids


def measure_case(
    case: str, url: str, home: Path, messages: int, sessions: int, backlog: int
) -> Measured:
    needs_backlog = case != "alone"
    with mailbot_processes(case, home, url, backlog if needs_backlog else 0) as (ports, pids):
        if needs_backlog:
            wait_until_draining(url)
        smtp_source(ports, WARM_UP, sessions)
        done_before, _ = worker_counts(url)
        run = smtp_source(ports, messages, sessions, servers=pids)
        done_after, pending = worker_counts(url)
    drained = (done_after - done_before) / run.seconds if needs_backlog else None
    if needs_backlog and pending == 0:
        print(f"  ({case}: the backlog ran out before smtp-source finished: not a figure)")
    cpu = run.server_cpu / run.seconds if run.server_cpu is not None else None
    return Measured(run.rate, cpu, drained, pending if needs_backlog else None, load())


def measure_sink(messages: int, sessions: int) -> Measured:
    with sink() as (port, process):
        smtp_source([port], WARM_UP, sessions)
        run = smtp_source([port], messages, sessions, servers=[process.pid])
    cpu = run.server_cpu / run.seconds if run.server_cpu is not None else None
    return Measured(run.rate, cpu, None, None, load())


# --- the report -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=3000, help="valid requests to drain")
    parser.add_argument("--rounds", type=int, default=1, help="sink + every case, repeated")
    parser.add_argument("--cases", default="alone,serve,split,postgres")
    parser.add_argument("--postgres", default=POSTGRES_URL)
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; the cases are {', '.join(CASES)}")
    if "postgres" in cases and not postgres_reachable(args.postgres):
        print(f"(PostgreSQL at {args.postgres} not reachable: case postgres left out)")
        cases.remove("postgres")
    print(
        f"mailbot gateway benchmark: smtp-source, {args.sessions} sessions, a new connection "
        f"per message, 4 KB; {args.messages} messages per case, backlog {args.backlog} valid "
        f"requests; {machine()}",
        flush=True,
    )
    results: dict[str, list[tuple[Measured, Measured]]] = {case: [] for case in cases}
    for round_no in range(args.rounds):
        for case in cases:
            base = measure_sink(args.messages, args.sessions)
            with workdir("mailbot-bench-gateway-") as home:
                database: Callable[[], contextlib.AbstractContextManager[str]] = (
                    (lambda: postgres_schema(args.postgres))
                    if case == "postgres"
                    else (lambda: contextlib.nullcontext(f"sqlite:///{home}/mailbot.db"))
                )
                with database() as url:
                    got = measure_case(case, url, home, args.messages, args.sessions, args.backlog)
            results[case].append((base, got))
            print(
                f"  round {round_no + 1} {case:<9} sink {base.rate:7.1f}/s  mailbot "
                f"{got.rate:7.1f}/s = {got.rate / base.rate:.2f} x  (load {got.load})",
                flush=True,
            )
    print()
    print(
        f"{'case':<10} {'sink/s':>8} {'mailbot/s':>10} {'x sink':>7} {'goal':>7} {'result':<7} "
        f"{'srv CPU':>8} {'drained/s':>10} {'left':>6}  load"
    )
    missed = []
    for case, pairs in results.items():
        ratios = [got.rate / base.rate for base, got in pairs]
        ratio = median(ratios)
        base_rate = median([base.rate for base, _ in pairs])
        rate = median([got.rate for _, got in pairs])
        last = pairs[-1][1]
        goal = GOALS.get(case)
        result = "" if goal is None else ("met" if ratio >= goal else "MISSED")
        if result == "MISSED":
            missed.append(case)
        spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        print(
            f"{case:<10} {base_rate:>8.1f} {rate:>10.1f} {ratio:>7.2f} "
            f"{'>=' + format(goal, '.2f') if goal else '':>7} {result:<7} "
            f"{format(last.server_cpu, '.0%') if last.server_cpu is not None else '':>8} "
            f"{format(last.drained, '.1f') if last.drained is not None else '':>10} "
            f"{last.pending_after if last.pending_after is not None else '':>6}  "
            f"{last.load}{spread}"
        )
    print()
    print("GOAL MISSED: " + ", ".join(missed) if missed else "Every goal met.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
