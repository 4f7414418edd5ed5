"""Memory benchmark (not a test): what many large messages at once do to ``mailbot serve``.

    .venv/bin/python bench/memory.py [--messages 20] [--megabytes 9.5] [--retry-seconds 1]

Starts a real ``mailbot serve`` (SQLite and a Maildir relay in a temporary directory, every
other setting at its default), then sends ``--messages`` distinct messages of about
``--megabytes`` MB at once, each from its own thread with ``smtplib`` and from its own
unregistered sender, as the hostile-sender test of issue 13 did. Each client behaves like an
MTA: a ``4xx`` answer (at connect, MAIL, RCPT or DATA) or a dropped connection is retried after
``--retry-seconds`` (an MTA waits minutes; the bench does not), a ``5xx`` is final.

It prints serve's resident memory before the run, its peak (``VmHWM`` from ``/proc``, the
kernel's own high-water mark, so no sample can miss it), after the messages were accepted and
after the worker had processed them, and how many were accepted, after how many ``4xx``
answers. Temporary files are removed. The figures are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

INTAKE = "apply@mailbot.localhost"
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60.0
SEND_TIMEOUT_SECONDS = 900.0
PROCESS_TIMEOUT_SECONDS = 900.0
MB = 1_000_000
MIB = 1024 * 1024


def large_message(index: int, size: int, seed: int) -> tuple[str, bytes]:
    """A ``size``-byte message from an outsider: a short text and a base64 attachment (76-byte
    lines, as mailers write them), random so that no two messages are the same."""
    sender = f"outsider{index}@bench-{seed}.example.net"
    head = (
        f"From: Outsider {index} <{sender}>\r\nTo: {INTAKE}\r\nSubject: large {index}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee the attachment\r\n"
        "--b\r\nContent-Type: application/octet-stream; name=data.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    tail = b"\r\n--b--\r\n"
    encoded_size = size - len(head) - len(tail)
    payload = random.Random(seed * 1000 + index).randbytes(encoded_size * 3 // 4)
    text = base64.b64encode(payload)
    lines = b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    return sender, head + lines[:encoded_size] + tail


# --- the serve process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_kib(pid: int, field_name: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/{pid}/status")


def wait_for_banner(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(3) == b"220":
                return
        time.sleep(0.1)
    raise RuntimeError(f"serve did not answer on port {port} within {timeout} s")


@contextlib.contextmanager
def serve(
    home: Path, port: int, extra: dict[str, str], only: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        {
            "MAILBOT_HOME": str(home),
            "MAILBOT_SMTP_LISTEN": f"127.0.0.1:{port}",
            "MAILBOT_WEB_LISTEN": f"127.0.0.1:{free_port()}",
            **{f"MAILBOT_{k.upper()}": v for k, v in extra.items()},
        }
    )
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailbot", "serve", *(["--only", only] if only else [])],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_banner(port, process, START_TIMEOUT_SECONDS)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- the clients ---------------------------------------------------------------------------


@dataclass
class Outcome:
    accepted: bool = False
    attempts: int = 0
    temporary: list[str] = field(default_factory=list)  # each 4xx answer, "421", "451", …
    final: str = ""
    seconds: float = 0.0


def deliver_like_an_mta(port: int, sender: str, raw: bytes, retry: float, source: str) -> Outcome:
    outcome = Outcome()
    began = time.monotonic()
    while time.monotonic() - began < SEND_TIMEOUT_SECONDS:
        outcome.attempts += 1
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120, source_address=(source, 0)) as client:
                client.sendmail(sender, [INTAKE], raw)
            outcome.accepted = True
            break
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            if code >= 500:
                outcome.final = str(code)
                break
            outcome.temporary.append(str(code))
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                outcome.final = str(exc.smtp_code)
                break
            outcome.temporary.append(str(exc.smtp_code))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            outcome.temporary.append(type(exc).__name__)
        time.sleep(retry)
    outcome.seconds = time.monotonic() - began
    return outcome


def inbound_counts(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        rows = db.execute("SELECT status, count(*) FROM inbound_message GROUP BY status")
        return {status: number for status, number in rows}


def run(
    messages: int,
    megabytes: float,
    retry: float,
    extra: dict[str, str],
    only: str | None,
    spread: bool,
) -> None:
    size = int(megabytes * MB)
    seed = random.SystemRandom().randrange(1 << 30)
    mails = [large_message(i, size, seed) for i in range(messages)]
    with tempfile.TemporaryDirectory(prefix="mailbot-memory-") as workdir:
        home = Path(workdir)
        port = free_port()
        with serve(home, port, extra, only) as server:
            time.sleep(1.0)  # let start-up settle (imports, migrations, first polls)
            before = memory_kib(server.pid, "VmRSS")
            outcomes = [Outcome() for _ in mails]

            def client(index: int) -> None:
                sender, raw = mails[index]
                source = f"127.0.{index // 250 + 1}.{index % 250 + 1}" if spread else "127.0.0.1"
                outcomes[index] = deliver_like_an_mta(port, sender, raw, retry, source)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(messages)]
            began = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            sent_seconds = time.monotonic() - began
            after_send = memory_kib(server.pid, "VmRSS")
            database = home / "mailbot.db"
            deadline = time.monotonic() + PROCESS_TIMEOUT_SECONDS
            while only is None and inbound_counts(database).get("pending", 0):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the worker did not process the messages")
                time.sleep(0.2)
            processed_seconds = time.monotonic() - began
            time.sleep(1.0)
            after_processing = memory_kib(server.pid, "VmRSS")
            peak = memory_kib(server.pid, "VmHWM")
            counts = inbound_counts(database)
    accepted = sum(o.accepted for o in outcomes)
    answers: dict[str, int] = {}
    for outcome in outcomes:
        for code in outcome.temporary:
            answers[code] = answers.get(code, 0) + 1
    print(
        f"{messages} messages of {size / MB:.1f} MB, one thread each "
        f"({'each from its own address' if spread else 'all from 127.0.0.1'}), "
        f"retry after {retry} s; "
        f"serve {'--only ' + only if only else '(all roles)'} {extra or ''}"
    )
    print(f"  serve RSS before          {before / 1024:8.0f} MiB")
    print(f"  serve peak RSS (VmHWM)    {peak / 1024:8.0f} MiB")
    print(f"  serve RSS after accepting {after_send / 1024:8.0f} MiB")
    print(f"  serve RSS after worker    {after_processing / 1024:8.0f} MiB")
    print(
        f"  accepted {accepted} of {messages} in {sent_seconds:.1f} s "
        f"(processed by {processed_seconds:.1f} s); stored rows by status: {counts}"
    )
    print(
        f"  attempts {sum(o.attempts for o in outcomes)}; temporary answers: "
        + (", ".join(f"{code} x{n}" for code, n in sorted(answers.items())) or "none")
    )
    finals = [o.final for o in outcomes if o.final]
    if finals:
        print(f"  REFUSED for good: {finals}")
    if accepted != messages:
        print(f"  NOT ALL ACCEPTED: {messages - accepted} missing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--megabytes", type=float, default=9.5)
    parser.add_argument("--retry-seconds", type=float, default=1.0)
    parser.add_argument(
        "--one-client",
        action="store_true",
        help="send every message from 127.0.0.1 (default: each from its own 127.0.x.y, so the "
        "per-client limits do not hide the total ones)",
    )
    parser.add_argument("--only", help="serve --only ROLES (e.g. smtp: the gateway alone)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for serve, e.g. --set smtp_max_data=4 (repeatable)",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    run(args.messages, args.megabytes, args.retry_seconds, extra, args.only, not args.one_client)


if __name__ == "__main__":
    main()
