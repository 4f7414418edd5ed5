"""What the benchmarks share: child processes, a bare SMTP sink, Postfix's smtp-source, valid
requests, throw-away databases, and the machine's state printed beside every figure.

Not a benchmark itself. The scripts put this checkout first on ``sys.path`` and import it as
``bench.common``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

# Never a port handed out before in this process: benchmarks, like tests, pick every port before
# the servers that use them start.
from tests.support.smtp import free_port as free_port

ROOT = Path(__file__).resolve().parents[1]
INTAKE = "apply@mailbot.localhost"
APPLICANT = "applicant@bench.example.co.jp"
MANAGER = "manager@bench.example.co.jp"
OFFICE = "BENCH1"
MESSAGE_BYTES = 4096
CLIENT_ADDRESS = "127.0.0.1"
SMTP_SOURCE = "/usr/sbin/smtp-source"  # Debian's postfix package (make system-deps)
POSTGRES_URL = os.environ.get(
    "MAILBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START_TIMEOUT_SECONDS = 60.0


# --- the machine ----------------------------------------------------------------------------


def machine() -> str:
    """One line naming what the figures were measured on."""
    return (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {load()}"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process, all its threads (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: utime and stime are fields 14 and 15 of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/{pid}/status")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- processes ------------------------------------------------------------------------------


def wait_for_banner(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before listening"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as c:
            if c.recv(64).startswith(b"220"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered SMTP on port {port} within {timeout} s")


def clean_env(**settings: str) -> dict[str, str]:
    """The environment for a child: no MAILBOT_* of the caller's, this checkout importable,
    and ``settings`` as ``MAILBOT_NAME`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({f"MAILBOT_{name.upper()}": value for name, value in settings.items()})
    return env


@contextlib.contextmanager
def child(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    port: int | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A Python child process (``args`` after the interpreter), stopped with SIGTERM after use;
    with ``port``, only once it answers SMTP there."""
    out = log.open("ab") if log is not None else None
    process = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
    )
    try:
        if port is not None:
            wait_for_banner(port, process, START_TIMEOUT_SECONDS)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if out is not None:
            out.close()


def mailbot(home: Path, env: dict[str, str], *command: str) -> str:
    """Run a ``mailbot`` command to completion; its output (raise with it on failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "mailbot", *command],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mailbot {' '.join(command)}: {done.stderr or done.stdout}")
    return done.stdout


# --- a bare SMTP sink, the baseline ---------------------------------------------------------


class _NullHandler:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 Ok"


def run_sink_server(port: int) -> None:
    """aiosmtpd with the options mailbot's gateway uses and a handler that keeps nothing."""
    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(
            lambda: SMTP(
                _NullHandler(),
                hostname="bench.localhost",  # no per-connection DNS lookup, as in mailbot
                decode_data=False,
                enable_SMTPUTF8=True,
                data_size_limit=10 * 1024 * 1024,
            ),
            host="127.0.0.1",
            port=port,
        )
        async with server:
            await stop.wait()

    asyncio.run(serve())


@contextlib.contextmanager
def sink() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    with child(["-m", "bench.common", "sink", str(port)], env=clean_env(), port=port) as process:
        yield port, process


# --- Postfix's smtp-source ------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRun:
    messages: int
    seconds: float
    server_cpu: float | None = None  # CPU seconds the servers used meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def smtp_source(
    ports: Sequence[int],
    messages: int,
    sessions: int,
    *,
    servers: Sequence[int] = (),
    sender: str = "source@bench-outside.example.net",
    size: int = MESSAGE_BYTES,
) -> SourceRun:
    """Send ``messages`` with smtp-source: ``sessions`` at once, a new connection per message,
    ``size`` bytes of body; split evenly over ``ports`` (one smtp-source each, all at once).
    Fails unless every message got its 250. ``servers``: pids whose CPU time is recorded."""
    if not Path(SMTP_SOURCE).exists():
        raise RuntimeError(f"{SMTP_SOURCE} is missing: `make system-deps` installs postfix")
    per_port = [messages // len(ports) + (n < messages % len(ports)) for n in range(len(ports))]
    per_sessions = max(1, sessions // len(ports))
    cpu_before = [cpu_seconds(pid) for pid in servers]
    began = time.perf_counter()
    runs = [
        subprocess.Popen(
            [
                SMTP_SOURCE,
                *("-s", str(per_sessions), "-m", str(count), "-l", str(size)),
                *("-f", sender, "-t", INTAKE, "-M", "bench-source.localhost"),
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for port, count in zip(ports, per_port, strict=True)
    ]
    failures = []
    for run in runs:
        output, _ = run.communicate()
        if run.returncode != 0:  # smtp-source stops at the first answer that is not 2xx/3xx
            failures.append(output.decode(errors="replace").strip())
    seconds = time.perf_counter() - began
    cpu_after = [cpu_seconds(pid) for pid in servers]
    if failures:
        raise RuntimeError(f"smtp-source failed: {failures[0]}")
    used = [
        after - before
        for before, after in zip(cpu_before, cpu_after, strict=True)
        if before is not None and after is not None
    ]
    return SourceRun(messages, seconds, sum(used) if used else None)


# --- an SMTP client that keeps its connections ----------------------------------------------


@dataclass
class ClientRun:
    messages: int
    seconds: float
    latencies: list[float]  # per message, from MAIL to the 250 after DATA
    client_cpu: float = 0.0  # CPU seconds of this process (the client threads) meanwhile
    server_cpu: float | None = None  # CPU seconds of the server process meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def send_all(
    port: int,
    messages: Sequence[bytes],
    sessions: int,
    sender: str,
    server_pid: int | None = None,
) -> ClientRun:
    """Deliver every message over ``sessions`` concurrent connections (``smtplib`` threads,
    each reusing its connection); fail on any refusal: a benchmark must not lie."""
    import smtplib
    import threading

    lock = threading.Lock()
    position = 0
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal position
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
                client.ehlo()
                while True:
                    with lock:
                        if position >= len(messages):
                            return
                        raw = messages[position]
                        position += 1
                    began = time.perf_counter()
                    client.sendmail(sender, [INTAKE], raw)
                    took = time.perf_counter() - began
                    with lock:
                        latencies.append(took)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(sessions)]
    server_before = cpu_seconds(server_pid) if server_pid else None
    client_before = time.process_time()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    client_cpu = time.process_time() - client_before
    server_after = cpu_seconds(server_pid) if server_pid else None
    if errors:
        raise RuntimeError(f"{len(errors)} client session(s) failed: {errors[0]!r}")
    server_cpu = (
        server_after - server_before
        if server_before is not None and server_after is not None
        else None
    )
    return ClientRun(len(messages), seconds, latencies, client_cpu, server_cpu)


def wait_for_files(
    folder: Path, count: int, timeout: float, process: subprocess.Popen[bytes]
) -> None:
    """Wait until ``folder`` holds ``count`` files (a Maildir's new/ filling up)."""
    deadline = time.monotonic() + timeout
    while count_files(folder) < count:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count_files(folder)} of {count} files after {timeout} s")
        time.sleep(0.05)


# --- valid requests -------------------------------------------------------------------------


def bench_user_id(n: int) -> str:
    """The n-th user ID of the bench's office (ten per user code)."""
    return f"B{n // 10:04d}A0{n % 10}"


def start_date() -> date:
    """A registration date every request sent now may ask for (lead time plus a margin)."""
    from mailbot.calendar import BusinessCalendar

    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    return BusinessCalendar().add_business_days(today, 4 + 5)


def request_message(
    user_id: str,
    start: date,
    size: int = MESSAGE_BYTES,
    *,
    applicant: str = APPLICANT,
    manager: str = MANAGER,
    office: str = OFFICE,
) -> bytes:
    """A valid request for one user ID, padded with a header nobody reads to ``size`` bytes."""
    message = EmailMessage()
    message["From"] = f"申込 担当 <{applicant}>"
    message["To"] = INTAKE
    message["Subject"] = "利用者IDの廃止申込"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@bench.example.co.jp>"
    message.set_content(
        "\n".join(
            [
                f"■事業所コード：{office}",
                f"■廃止する利用者ID：{user_id}",
                f"■利用開始希望日：{start.year}年{start.month}月{start.day}日",
                "■変更する理由：ベンチマーク",
                "■申込担当者：申込 担当",
                "■申込担当者電話番号：03-1234-5678",
                "■管理責任者：管理 責任",
                f"■管理責任者メールアドレス：{manager}",
            ]
        )
    )
    raw = message.as_bytes().replace(b"\n", b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    # A folded header (lines under SMTP's 1000-byte limit) that no part of mailbot reads.
    missing = size - len(raw) - len(b"\r\nX-Bench-Padding:")
    chunks = [b"x" * 70] * (missing // 73) + [b"x" * max(missing % 73 - 3, 0)]
    padding = b"\r\nX-Bench-Padding:" + b"".join(b" " + c + b"\r\n" for c in chunks).rstrip(b"\r\n")
    return head + padding + b"\r\n\r\n" + body


def prepare_home(home: Path, env: dict[str, str], user_ids: Sequence[str], start: date) -> None:
    """Schema, a registry of ``user_ids`` (the bench's office; applicant and manager its
    contacts) and a schedule with ``start``, through mailbot's own commands."""
    home.mkdir(parents=True, exist_ok=True)
    registry = home / "registry.csv"
    registry.write_text(
        "office_code,company,office,department,contact_emails,user_id\n"
        + "".join(
            f"{OFFICE},ベンチ株式会社,本社,総務部,{APPLICANT};{MANAGER},{u}\n" for u in user_ids
        ),
        encoding="utf-8",
    )
    schedule = home / "schedule.txt"
    schedule.write_text(f"{start.isoformat()}\n", encoding="utf-8")
    mailbot(home, env, "db", "upgrade")
    mailbot(home, env, "registry", "import", str(registry))
    mailbot(home, env, "schedule", "import", str(schedule))


def count_files(path: Path) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


# --- throw-away PostgreSQL schemas ----------------------------------------------------------


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def postgres_schema(base_url: str = POSTGRES_URL) -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in base_url else "?"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":  # python -m bench.common sink PORT: the baseline server
    if sys.argv[1:2] == ["sink"]:
        run_sink_server(int(sys.argv[2]))
