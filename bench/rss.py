"""Memory benchmark (not a test): does ``serve`` grow with the requests it handled? (issue 16,
item 3)

    .venv/bin/python bench/rss.py [--requests 10000] [--first 1000] [--sessions 8]

Starts a real ``mailbot serve`` (every role, SQLite and a Maildir in a temporary directory),
sends ``--first`` valid requests (each one user ID of a registry of ``--requests`` IDs) over
SMTP, waits until both receipt notices of each are in the Maildir and a second more, and reads
serve's resident memory (VmRSS): the baseline. Then the rest up to ``--requests``, the same
way. Goal: RSS after ``--requests`` <= 1.2 x RSS after ``--first``. Also shown: RSS at start
and the peak (VmHWM). It prints a table and writes nothing else; docs/performance.md has the
figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's mailbot and bench

from bench.common import (  # noqa: E402
    APPLICANT,
    CLIENT_ADDRESS,
    bench_user_id,
    child,
    clean_env,
    free_port,
    load,
    machine,
    prepare_home,
    request_message,
    rss_kib,
    send_all,
    start_date,
    wait_for_files,
    workdir,
)

GOAL = 1.2
SETTLE_SECONDS = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=1_000)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"mailbot RSS benchmark: {args.first} then {args.requests} valid requests; {machine()}")
    start = start_date()
    with workdir("mailbot-bench-rss-") as home:
        port = free_port()
        env = clean_env(
            home=str(home),
            smtp_listen=f"127.0.0.1:{port}",
            web_listen=f"127.0.0.1:{free_port()}",
            trusted_relays=CLIENT_ADDRESS,
        )
        user_ids = [bench_user_id(n) for n in range(args.requests)]
        prepare_home(home, env, user_ids, start)
        new = home / "sent" / "new"
        readings: list[tuple[str, int, float]] = []
        with child(["-m", "mailbot", "serve"], env=env, cwd=home, port=port) as serve:
            time.sleep(SETTLE_SECONDS)
            readings.append(("at start", rss_kib(serve.pid), 0.0))
            began = time.perf_counter()
            for label, first, last in (
                ("after first", 0, args.first),
                ("after all", args.first, args.requests),
            ):
                messages = [request_message(u, start) for u in user_ids[first:last]]
                send_all(port, messages, args.sessions, APPLICANT)
                wait_for_files(new, 2 * last, 1800, serve)
                time.sleep(SETTLE_SECONDS)
                readings.append(
                    (f"{label} ({last})", rss_kib(serve.pid), time.perf_counter() - began)
                )
                print(
                    f"  {readings[-1][0]}: {readings[-1][1] / 1024:.1f} MiB (load {load()})",
                    flush=True,
                )
            peak = rss_kib(serve.pid, "VmHWM")
    print()
    print(f"{'serve RSS':<28} {'MiB':>8} {'x first':>8} {'seconds':>8}")
    base = readings[1][1]
    for label, kib, seconds in readings:
        print(f"{label:<28} {kib / 1024:>8.1f} {kib / base:>8.2f} {seconds:>8.1f}")
    print(f"{'peak (VmHWM)':<28} {peak / 1024:>8.1f} {peak / base:>8.2f}")
    ratio = readings[-1][1] / base
    met = ratio <= GOAL
    print(
        f"\nRSS after {args.requests} = {ratio:.2f} x after {args.first}: goal <= {GOAL} "
        f"{'met' if met else 'MISSED'} (load {load()})"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
