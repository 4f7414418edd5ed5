"""Intake benchmark (not a test): how fast mailbot takes mail in, against a bare SMTP sink.

    .venv/bin/python bench/intake.py [--messages 3000] [--requests 400] [--sessions 8]

Three measurements in one run, each server in its own process (so client and server do not
share a GIL), the same client for all: ``--sessions`` concurrent SMTP sessions, each reusing
its connection, sending 4 KB messages.

(a) a bare aiosmtpd server whose handler answers 250 and keeps nothing: the baseline;
(b) mailbot's ``SmtpGateway`` with durable storage (SQLite in a temporary directory, each 250
    after the commit, ``synchronous=FULL``), no worker: shown as a ratio to (a);
(c) ``mailbot serve`` end to end: valid requests in, both receipt notices (applicant and
    manager) in the Maildir: goal >= 80 requests/s (issue 16, item 5; the ratio to (a) is
    shown too). The rate at which serve's gateway said 250 meanwhile is shown as well.

The ratios this bench once set as targets ((b) >= 0.8 x (a), (c) >= 0.25 x (a)) are retired
(docs/performance.md says why); bench/gateway.py measures the gateway beside a draining worker
with Postfix's smtp-source. It prints a table and writes nothing else (temporary directories
are removed). The figures and their analysis live in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's mailbot and bench

from bench.common import (  # noqa: E402
    APPLICANT,
    CLIENT_ADDRESS,
    INTAKE,
    MESSAGE_BYTES,
    ClientRun,
    bench_user_id,
    child,
    clean_env,
    cpu_seconds,
    free_port,
    load,
    machine,
    percentile,
    prepare_home,
    request_message,
    send_all,
    sink,
    start_date,
    wait_for_files,
    workdir,
)

END_TO_END_GOAL = 80.0  # valid requests per second, one process, SQLite
END_TO_END_TIMEOUT_SECONDS = 600.0


# --- (b): the gateway alone, in a child process -------------------------------------------


def run_gateway_server(port: int, home: str) -> None:
    """mailbot's SmtpGateway, exactly as serve builds it, without worker or outbox."""
    from db.engine import make_engine
    from db.migrate import upgrade
    from mailbot.config import load_settings
    from mailbot.gateway.smtp import SmtpGateway

    # The bench's one client plays the MTA in front (docs/operations.md, "Postfix in front"):
    # a trusted relay, held to the gateway's total limits only.
    settings = load_settings(
        home=Path(home), smtp_listen=f"127.0.0.1:{port}", trusted_relays=CLIENT_ADDRESS
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        gateway = SmtpGateway(engine, settings)
        await gateway.start()
        try:
            await stop.wait()
        finally:
            await gateway.stop()

    asyncio.run(serve())


def filler_message(n: int) -> bytes:
    """A 4 KB message that is not a request: for (a) and (b), which only store."""
    head = (
        f"From: Bench <{APPLICANT}>\r\nTo: {INTAKE}\r\nSubject: bench {n}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.example.co.jp>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = (line * (MESSAGE_BYTES // len(line) + 1))[: MESSAGE_BYTES - len(head) - 2] + b"\r\n"
    return head + body


# --- the three measurements ---------------------------------------------------------------


def bench_sink(count: int, sessions: int) -> ClientRun:
    messages = [filler_message(n) for n in range(count)]
    with sink() as (port, server):
        send_all(port, messages[: sessions * 4], sessions, APPLICANT)  # warm-up
        return send_all(port, messages, sessions, APPLICANT, server.pid)


def bench_gateway(count: int, sessions: int, home: Path) -> ClientRun:
    port = free_port()
    warm = [filler_message(-n) for n in range(1, sessions * 4 + 1)]
    messages = [filler_message(n) for n in range(count)]
    args = [__file__, "--server", "gateway", "--port", str(port), "--home", str(home)]
    with child(args, env=clean_env(), port=port) as server:
        send_all(port, warm, sessions, APPLICANT)
        return send_all(port, messages, sessions, APPLICANT, server.pid)


@dataclass
class EndToEnd:
    requests: int
    seconds: float
    accept: ClientRun
    server_cpu: float | None


def bench_end_to_end(count: int, sessions: int, home: Path) -> EndToEnd:
    port = free_port()
    # The bench's one client is a trusted relay, as in (b).
    env = clean_env(home=str(home), smtp_listen=f"127.0.0.1:{port}", trusted_relays=CLIENT_ADDRESS)
    user_ids = [bench_user_id(n) for n in range(count)]
    start = start_date()
    prepare_home(home, env, user_ids, start)
    messages = [request_message(u, start) for u in user_ids]
    with child(["-m", "mailbot", "serve"], env=env, cwd=home, port=port) as server:
        cpu_before = cpu_seconds(server.pid)
        began = time.perf_counter()
        accept = send_all(port, messages, sessions, APPLICANT, server.pid)
        wait_for_files(home / "sent" / "new", 2 * count, END_TO_END_TIMEOUT_SECONDS, server)
        seconds = time.perf_counter() - began
        cpu_after = cpu_seconds(server.pid)
    _check_notices(home / "sent", 2 * count)
    server_cpu = (
        cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    )
    return EndToEnd(count, seconds, accept, server_cpu)


def _check_notices(maildir: Path, expected: int) -> None:
    """Every file must be a receipt notice: a fast wrong answer is not a result."""
    import email
    import email.policy
    import mailbox

    box = mailbox.Maildir(maildir, factory=None, create=False)
    subjects = [
        str(email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)["Subject"])
        for key in box.iterkeys()
    ]
    receipts = [s for s in subjects if "受付完了" in s]
    if len(receipts) != expected or len(subjects) != expected:
        raise RuntimeError(
            f"expected {expected} receipt notices, found {len(receipts)} of {len(subjects)}"
        )


@dataclass
class Row:
    name: str
    count: int
    seconds: float
    ratio: float
    goal: float | None  # per second
    run: ClientRun | None
    server_cpu: float | None = None

    @property
    def met(self) -> bool:
        return self.goal is None or self.count / self.seconds >= self.goal

    def line(self) -> str:
        run = self.run
        goal = f">={self.goal:.0f}/s" if self.goal is not None else ""
        result = "" if self.goal is None else ("met" if self.met else "MISSED")
        p50 = f"{percentile(run.latencies, 0.5) * 1000:.1f}ms" if run else ""
        p99 = f"{percentile(run.latencies, 0.99) * 1000:.1f}ms" if run else ""
        server_cpu = run.server_cpu if run else self.server_cpu
        srv = f"{100 * server_cpu / self.seconds:.0f}%" if server_cpu is not None else ""
        cli = f"{100 * run.client_cpu / self.seconds:.0f}%" if run else ""
        return (
            f"{self.name:<40} {self.count:>6} {self.seconds:>8.2f} {self.count / self.seconds:>8.1f} "
            f"{self.ratio:>6.2f} {goal:>7}  {result:<7} {p50:>8} {p99:>8} {srv:>8} {cli:>8}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages for (a) and (b)")
    parser.add_argument("--requests", type=int, default=400, help="valid requests for (c)")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--server", choices=["gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server == "gateway":
        run_gateway_server(args.port, args.home)
        return 0

    print(
        f"mailbot intake benchmark: {args.sessions} concurrent SMTP sessions, "
        f"{MESSAGE_BYTES}-byte messages; {machine()}",
        flush=True,
    )
    with workdir("mailbot-bench-") as scratch:
        sink_run = bench_sink(args.messages, args.sessions)
        gateway = bench_gateway(args.messages, args.sessions, scratch / "gateway")
        end = bench_end_to_end(args.requests, args.sessions, scratch / "serve")

    base = sink_run.rate
    e2e_rate = end.requests / end.seconds
    rows: list[Row] = [
        Row("(a) bare aiosmtpd sink", sink_run.messages, sink_run.seconds, 1.0, None, sink_run),
        Row(
            "(b) mailbot gateway, SQLite, durable",
            gateway.messages,
            gateway.seconds,
            gateway.rate / base,
            None,
            gateway,
        ),
        Row(
            "(c) request -> both notices in Maildir",
            end.requests,
            end.seconds,
            e2e_rate / base,
            END_TO_END_GOAL,
            None,
            end.server_cpu,
        ),
        Row(
            "    serve's 250s during (c)",
            end.accept.messages,
            end.accept.seconds,
            end.accept.rate / base,
            None,
            end.accept,
        ),
    ]
    print()
    print(
        f"{'case':<40} {'count':>6} {'seconds':>8} {'per s':>8} {'x (a)':>6} {'goal':>7}  "
        f"{'result':<7} {'250 p50':>8} {'250 p99':>8} {'srv CPU':>8} {'cli CPU':>8}"
    )
    for row in rows:
        print(row.line())
    missed = [r.name for r in rows if not r.met]
    print()
    print(f"load average {load()} at the end")
    if missed:
        print(
            "GOAL MISSED: " + "; ".join(n.strip() for n in missed) + ". Why: docs/performance.md."
        )
        return 1
    print("Every goal met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
