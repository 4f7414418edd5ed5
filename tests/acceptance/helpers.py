"""Whole-process helpers for the acceptance tests: a real ``mailbot serve`` subprocess, a
multi-threaded SMTP client that records every 250, a read-only view of the database, parsers
for what arrived at the relay sink or in the Maildir, and what the start date changed.

Nothing here calls mailbot's services: the tests talk to mailbot only the way a user or an
operator does (SMTP, the command line, the relay, the logs), and read the database only to know
when to pull the plug and to check what was applied, as an operator would with psql (and once
write to stand in for a clock that moved on, see ``expire_outbox_leases``).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import mailbox
import os
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Engine, text

from db.engine import make_engine
from mailbot.calendar import BusinessCalendar
from mailbot.outbox import LEASE as OUTBOX_LEASE
from scheduler.leader import advisory_key
from tests.support.requests import INTAKE, form, mail
from tests.support.smtp import Delivery

TOKYO = ZoneInfo("Asia/Tokyo")
LEAD_BUSINESS_DAYS = 4
RECEIPT_IN_SUBJECT = re.compile(r"（(\d{6}[A-Z])）")
START_TIMEOUT_SECONDS = 30.0


# --- the serve process ---------------------------------------------------------------------


class ServeProcess:
    """``python -m mailbot serve`` with its own environment, home and SMTP port.

    ``start`` may be called again after ``kill``/``terminate``: the same home, database and
    port, as an init system restarts a crashed service. Every run appends to one log file.
    """

    def __init__(self, name: str, home: Path, settings: Mapping[str, str]) -> None:
        self.name = name
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = int(settings["smtp_listen"].rpartition(":")[2])
        # The developer's own MAILBOT_* variables must not leak into the process under test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
        env.update({f"MAILBOT_{key.upper()}": value for key, value in settings.items()})
        env["MAILBOT_HOME"] = str(home)
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        self.log_path = home / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    # lifecycle
    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """``mailbot serve``; returns once its SMTP gateway answers."""
        self.spawn("mailbot", "serve")
        self._wait_until_answering(timeout)

    def spawn(self, module: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        """``python -m MODULE ARGS`` as this process: its settings (plus ``env``), home and log;
        ``kill``, ``terminate`` and the fixture's clean-up apply to it as to ``serve``."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== {self.name}: {module} {args[0]}, run {self.runs} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env={**self.env, **(env or {})},
                cwd=self.home,  # no stray ./mailbot.toml from the caller's directory
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            if smtp_banner(self.port):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not answer SMTP on {self.port} within {timeout} s:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no handler runs, no transaction finishes, no buffer is flushed."""
        assert self.process is not None and self.running, f"{self.name} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit; the exit code (fails if it takes too long)."""
        assert self.process is not None and self.running, f"{self.name} is not running"
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s of {sig.name}:\n" + self.log_tail()
            ) from None

    def cleanup(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    # what it said
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_count(self, needle: str) -> int:
        return self.log_text().count(needle)

    # the operator's command line, against the same settings
    def cli(
        self, *args: str, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("mailbot", *args, check=check, env=env)

    def run(
        self, module: str, *args: str, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m MODULE ARGS`` to completion with this process's settings (plus ``env``)
        and home."""
        result = subprocess.run(
            [sys.executable, "-m", module, *args],
            env={**self.env, **(env or {})},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{module} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)


def smtp_banner(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something on ``port`` greets with ``220`` (the gateway is really serving)."""
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.settimeout(2)
            greeting = conn.recv(512)
            with contextlib.suppress(OSError):
                conn.sendall(b"QUIT\r\n")
            return greeting.startswith(b"220")
    except OSError:
        return False


ServeFactory = Callable[..., ServeProcess]
"""The ``serve_factory`` fixture: ``(name="serve", *, database_url=None, relay=None, **settings)``."""


# --- registry, schedule and requests --------------------------------------------------------


@dataclass(frozen=True)
class Office:
    code: str
    applicant: str
    manager: str
    user_ids: tuple[str, ...]


def make_office(count: int, code: str = "LOAD01", prefix: str = "Z") -> Office:
    """An office with ``count`` user IDs, ten per user code (so no request names a whole code,
    and the rules look at ten rows per request, as for a real contract)."""
    user_ids = tuple(f"{prefix}{n // 10:04d}A0{n % 10}" for n in range(count))
    return Office(
        code=code,
        applicant=f"applicant@{code.lower()}.example.co.jp",
        manager=f"manager@{code.lower()}.example.co.jp",
        user_ids=user_ids,
    )


def start_date(today: date | None = None) -> date:
    """A desired start date every request accepts for days to come: well past the lead time
    (the serve process uses the real clock, and a run may cross midnight in Tokyo)."""
    today = today or datetime.now(TOKYO).date()
    return BusinessCalendar().add_business_days(today, LEAD_BUSINESS_DAYS + 5)


def load_registry(serve: ServeProcess, offices: Sequence[Office], start: date) -> None:
    """Create the tables and import the registry CSV and the schedule, as an operator does."""
    csv_path = serve.home / "registry.csv"
    lines = ["office_code,company,office,department,contact_emails,user_id"]
    for office in offices:
        contacts = f"{office.applicant};{office.manager}"
        lines += [
            f"{office.code},負荷試験株式会社,{office.code}事業所,通関部,{contacts},{uid}"
            for uid in office.user_ids
        ]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    schedule_path = serve.home / "schedule.txt"
    schedule_path.write_text(f"{start.isoformat()}\n", encoding="utf-8")
    serve.cli("db", "upgrade")
    serve.cli("registry", "import", str(csv_path))
    serve.cli("schedule", "import", str(schedule_path))


@dataclass(frozen=True)
class Outgoing:
    message_id: str
    user_id: str
    sender: str
    raw: bytes


def request_for(office: Office, user_id: str, start: date) -> Outgoing:
    """A valid request abolishing ``user_id``, from the office's applicant (base64 UTF-8)."""
    body = form(
        user_id,
        start=start,
        office_code=office.code,
        manager_email=office.manager,
        reason=f"負荷試験 {user_id}",
    )
    raw = mail(body, sender=office.applicant)
    return Outgoing(
        message_id=message_id_of(raw), user_id=user_id, sender=office.applicant, raw=raw
    )


@dataclass(frozen=True)
class Workload:
    """An office in ``serve``'s registry and one valid request per user ID, ready to send."""

    office: Office
    start: date
    messages: list[Outgoing]

    @property
    def user_id_of(self) -> dict[str, str]:
        """Message-ID → the user ID its request abolishes."""
        return {m.message_id: m.user_id for m in self.messages}


def registry_with_requests(serve: ServeProcess, count: int, code: str = "LOAD01") -> Workload:
    """The usual set-up: an office of ``count`` IDs imported into ``serve``'s (new) database,
    with a start date every request accepts, and a request abolishing each of its IDs."""
    office = make_office(count, code=code)
    start = start_date()
    load_registry(serve, [office], start)
    messages = [request_for(office, user_id, start) for user_id in office.user_ids]
    return Workload(office=office, start=start, messages=messages)


def message_id_of(raw: bytes) -> str:
    value = email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
    assert value, "every test message has a Message-ID"
    return str(value).strip()


# --- the sending side -----------------------------------------------------------------------


@dataclass
class SendReport:
    """What the clients were told, per Message-ID. Only a 250 counts as accepted."""

    accepted: dict[str, int] = field(default_factory=dict)  # Message-ID -> attempts it took
    rejected: dict[str, str] = field(default_factory=dict)  # Message-ID -> 5xx reply
    interrupted_attempts: int = 0  # attempts that ended without any answer, or with 4xx
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.accepted)


class BulkSender:
    """Several client threads delivering ``messages`` like MTAs: one connection per thread,
    reused; a message that got no answer or a 4xx is tried again (same bytes) until it gets a
    250 or a 5xx, or the deadline passes. Thread ``i`` talks to ``ports[i % len(ports)]``."""

    def __init__(
        self,
        ports: Sequence[int],
        messages: Sequence[Outgoing],
        *,
        threads: int = 8,
        deadline_seconds: float = 180.0,
        retry_pause: float = 0.05,
    ) -> None:
        self.ports = list(ports)
        self.messages = list(messages)
        self.report = SendReport()
        self.deadline = time.monotonic() + deadline_seconds
        self.retry_pause = retry_pause
        self._next = 0
        self._take_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"smtp-client-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> BulkSender:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> SendReport:
        for thread in self._threads:
            thread.join(max(0.0, self.deadline - time.monotonic()) + 5)
        assert not any(t.is_alive() for t in self._threads), "clients still sending at deadline"
        return self.report

    def _take(self) -> Outgoing | None:
        with self._take_lock:
            if self._next >= len(self.messages):
                return None
            self._next += 1
            return self.messages[self._next - 1]

    def _run(self, index: int) -> None:
        port = self.ports[index % len(self.ports)]
        client: smtplib.SMTP | None = None
        try:
            while (message := self._take()) is not None:
                client = self._deliver(port, client, message)
        finally:
            if client is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()

    def _deliver(
        self, port: int, client: smtplib.SMTP | None, message: Outgoing
    ) -> smtplib.SMTP | None:
        attempts = 0
        while time.monotonic() < self.deadline:
            attempts += 1
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
                client.sendmail(message.sender, [INTAKE], message.raw)
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500:
                    with self.report.lock:
                        self.report.rejected[message.message_id] = (
                            f"{exc.smtp_code} {exc.smtp_error!r}"
                        )
                    return client
                self._drop(client)
                client = None
            except (smtplib.SMTPException, OSError):
                # Connection refused (serve is down), reset or closed mid-DATA (killed): no
                # answer means no promise, so the message goes again, as an MTA would send it.
                self._drop(client)
                client = None
            else:
                with self.report.lock:
                    self.report.accepted[message.message_id] = attempts
                return client
        return client

    def _drop(self, client: smtplib.SMTP | None) -> None:
        with self.report.lock:
            self.report.interrupted_attempts += 1
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        time.sleep(self.retry_pause)
        return None


# --- watching the database (read-only, never through mailbot) -------------------------------


class DbWatch:
    """Read-only queries against serve's database, to time the kills and see the queues."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        else:
            conn = psycopg.connect(self.url, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()

    def scalar(self, sql: str) -> Any:
        with self._connect() as conn:
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        """inbound by status, applications, outbox by status: one snapshot."""
        queries = {
            "inbound": "SELECT count(*) FROM inbound_message",
            "inbound_pending": "SELECT count(*) FROM inbound_message WHERE status = 'pending'",
            "inbound_done": "SELECT count(*) FROM inbound_message WHERE status = 'done'",
            "applications": "SELECT count(*) FROM application",
            "outbox_pending": "SELECT count(*) FROM outbound_message WHERE status = 'pending'",
            "outbox_sent": "SELECT count(*) FROM outbound_message WHERE status = 'sent'",
        }
        try:
            with self._connect() as conn:
                return {k: int(conn.execute(q).fetchone()[0]) for k, q in queries.items()}
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            return dict.fromkeys(queries, 0)  # tables not created yet

    def expire_outbox_leases(self, claimed_before: datetime) -> int:
        """End the leases on outbox rows claimed before ``claimed_before``; how many there were.

        The outbox leases a claimed row for five minutes (``mailbot.outbox.LEASE``, not a
        setting), and a restarted process cannot tell a dead claimer from a live one, so rows
        that a killed process had claimed wait out the lease before anyone sends them. Waiting
        five minutes per test is not affordable; this write stands in for the clock moving on.
        Only leases taken before ``claimed_before`` (the last kill) end: a lease of the live
        process runs until at least its start + LEASE, later than any of the dead ones.
        """
        cutoff = claimed_before.astimezone(UTC) + OUTBOX_LEASE
        now = datetime.now(UTC)
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
                # SQLAlchemy stores these as naive 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text.
                cursor = conn.execute(
                    "UPDATE outbound_message SET next_attempt_at = ? "
                    "WHERE status = 'pending' AND next_attempt_at > ? AND next_attempt_at <= ?",
                    (_sqlite_time(now), _sqlite_time(now), _sqlite_time(cutoff)),
                )
                return int(cursor.rowcount)
        with psycopg.connect(self.url, autocommit=True) as pg:
            moved = pg.execute(
                "UPDATE outbound_message SET next_attempt_at = %s "
                "WHERE status = 'pending' AND next_attempt_at > %s AND next_attempt_at <= %s",
                (now, now, cutoff),
            )
            return int(moved.rowcount)


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


# --- what mailbot made of the requests (through the operator's command line) ---------------


def assert_each_request_handled_once(
    serve: ServeProcess, accepted: Collection[str], user_id_of: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every request answered 250 (``accepted``: Message-IDs) stored once, processed once and
    accepted, and made into one application naming its user ID; receipt numbers ``YY0001A`` …
    without a gap or a repeat. The applications, as ``mailbot list`` shows them."""
    count = len(accepted)
    inbound = serve.cli_json("inbound", "list", "--limit", str(10 * count))
    stored = Counter(row["message_id"] for row in inbound)
    assert set(stored) == set(accepted), "stored messages differ from the ones answered 250"
    assert [mid for mid, n in stored.items() if n != 1] == [], "stored more than once"
    not_done = [(r["id"], r["status"], r["kind"]) for r in inbound if r["status"] != "done"]
    assert not_done == []
    # A second processing of the same request would have found its user ID taken and
    # produced an "invalid" outcome; every one must have been accepted.
    assert Counter(r["kind"] for r in inbound) == {"accepted": count}

    applications: list[dict[str, Any]] = serve.cli_json("list")
    by_message = applications_by_message_id(applications)
    assert set(by_message) == set(accepted)
    assert [mid for mid, n in by_message.items() if n != 1] == [], "one application per request"
    assert sorted(a["receipt_no"] for a in applications) == receipt_numbers(count), (
        "receipt numbers must run YY0001A … without gaps or repeats"
    )
    for application in applications:
        received = next(e for e in application["events"] if e["event"] == "received")
        assert application["user_ids"] == [user_id_of[received["detail"]["message_id"]]]
    return applications


# --- what arrived ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    message_id: str
    recipients: tuple[str, ...]
    to_header: str
    subject: str
    receipt_no: str | None
    in_reply_to: str | None
    body: str


def parse_notice(raw: bytes, recipients: Sequence[str] = ()) -> Notice:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(message["Subject"] or "")
    found = RECEIPT_IN_SUBJECT.search(subject)
    text_part = message.get_body(preferencelist=("plain",))
    body = text_part.get_content() if text_part is not None else ""
    return Notice(
        message_id=str(message["Message-ID"] or "").strip(),
        recipients=tuple(r.lower() for r in recipients),
        to_header=str(message["To"] or ""),
        subject=subject,
        receipt_no=found.group(1) if found else None,
        in_reply_to=str(message["In-Reply-To"]).strip() if message["In-Reply-To"] else None,
        body=body,
    )


def sink_notices(deliveries: Sequence[Delivery]) -> list[Notice]:
    return [parse_notice(d.content, d.rcpt_tos) for d in deliveries]


def maildir_notices(path: Path) -> list[Notice]:
    if not path.exists():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    return [parse_notice(box.get_bytes(key)) for key in box.iterkeys()]


@dataclass(frozen=True)
class NoticeTally:
    """Notices of one kind at the relay: distinct ones per (receipt number, recipient), and how
    many arrivals repeated a Message-ID already seen."""

    by_key: dict[tuple[str, str], set[str]]
    repeats: int
    total: int


RECEIPT_NOTICE = "受付完了"  # 「受付完了のお知らせ」, sent on intake
APPLIED_NOTICE = "適用完了"  # 「利用者ID廃止の適用完了のお知らせ」, sent on the start date


def tally_notices(notices: Sequence[Notice], kind: str) -> NoticeTally:
    """The notices whose subject names ``kind`` (``RECEIPT_NOTICE``, ``APPLIED_NOTICE``)."""
    by_key: dict[tuple[str, str], set[str]] = {}
    arrivals: Counter[str] = Counter()
    for notice in notices:
        if notice.receipt_no is None or kind not in notice.subject:
            continue
        arrivals[notice.message_id] += 1
        for recipient in notice.recipients:
            by_key.setdefault((notice.receipt_no, recipient), set()).add(notice.message_id)
    repeats = sum(n - 1 for n in arrivals.values())
    return NoticeTally(by_key=by_key, repeats=repeats, total=sum(arrivals.values()))


def tally_receipt_notices(notices: Sequence[Notice]) -> NoticeTally:
    return tally_notices(notices, RECEIPT_NOTICE)


def assert_one_notice_each(
    deliveries: Sequence[Delivery],
    kind: str,
    receipts: Sequence[str],
    recipients: Sequence[str],
    *,
    repeats_allowed: int = 0,
) -> NoticeTally:
    """At the relay: one ``kind`` notice (one Message-ID) for each receipt number and each
    recipient, none missing or misaddressed, and at most ``repeats_allowed`` arrivals of a
    Message-ID already seen."""
    tally = tally_notices(sink_notices(deliveries), kind)
    expected = {(no, who.lower()) for no in receipts for who in recipients}
    assert set(tally.by_key) == expected, f"a {kind} notice is missing or misaddressed"
    several = {key: ids for key, ids in tally.by_key.items() if len(ids) != 1}
    assert several == {}, f"the same person got two different {kind} notices"
    assert tally.repeats <= repeats_allowed, f"{tally.repeats} {kind} notices arrived twice"
    return tally


def receipt_numbers(count: int, today: date | None = None) -> list[str]:
    """The first ``count`` receipt numbers of this year in Tokyo: ``YY0001A`` … (no gaps)."""
    year = (today or datetime.now(TOKYO).date()).year % 100
    return [f"{year:02d}{n:04d}A" for n in range(1, count + 1)]


def applications_by_message_id(applications: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """How many applications name each request Message-ID (from their ``received`` event)."""
    seen: Counter[str] = Counter()
    for application in applications:
        for event in application["events"]:
            if event["event"] == "received":
                seen[str(event["detail"]["message_id"])] += 1
    return seen


# --- the start date and the scheduler -------------------------------------------------------

# What each process says about the scheduler (scheduler/service.py): the operator's view of
# which instance runs it.
LEADS = "runs the scheduler\n"
STANDS_BY = "another process runs the scheduler; standing by"


def tokyo_soon(seconds: float) -> tuple[date, str]:
    """(start date, apply time HH:MM:SS): the run time ``seconds`` from now, in Tokyo. The
    processes use the real clock; this moves the run time near instead of waiting for midnight."""
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).astimezone(TOKYO)
    return at.date(), at.strftime("%H:%M:%S")


@contextlib.contextmanager
def database(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def per_application(engine: Engine) -> dict[str, dict[str, Any]]:
    """For each application: status, IDs abolished / total, open items, applied events, notices,
    all read in one snapshot (while a process applies, three statements under PostgreSQL's READ
    COMMITTED could each see a different moment; SQLite's transaction is one already)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        rows = conn.execute(
            text(
                "SELECT a.receipt_no, a.status, "
                "SUM(CASE WHEN u.status = 'abolished' THEN 1 ELSE 0 END), COUNT(*), "
                "SUM(CASE WHEN i.open THEN 1 ELSE 0 END) "
                "FROM application a "
                "JOIN application_item i ON i.application_id = a.id AND i.kind = 'user_id' "
                "JOIN user_id u ON u.user_id = i.key "
                "GROUP BY a.receipt_no, a.status"
            )
        ).all()
        events: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT a.receipt_no, COUNT(e.id) FROM application a LEFT JOIN audit_event e "
                    "ON e.application_id = a.id AND e.event = 'applied' GROUP BY a.receipt_no"
                )
            ).all()
        )
        notices: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT a.receipt_no, COUNT(o.id) FROM application a LEFT JOIN "
                    "outbound_message o ON o.application_id = a.id AND o.kind = 'applied' "
                    "GROUP BY a.receipt_no"
                )
            ).all()
        )
    return {
        receipt_no: {
            "status": status,
            "abolished": int(abolished),
            "ids": int(ids),
            "open": int(open_items),
            "events": int(events[receipt_no]),
            "notices": int(notices[receipt_no]),
        }
        for receipt_no, status, abolished, ids, open_items in rows
    }


def assert_all_or_nothing(state: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Every application wholly applied (once) or wholly not; (applied, not applied)."""
    applied = untouched = 0
    for receipt_no, row in state.items():
        if row["status"] == "applied":
            # An applied ID's item keeps holding the abolished ID for good (ApplicationItem).
            assert (row["abolished"], row["open"], row["events"], row["notices"]) == (
                row["ids"],
                row["ids"],
                1,
                2,
            ), receipt_no
            applied += 1
        else:
            assert row["status"] == "approved", receipt_no
            assert (row["abolished"], row["open"], row["events"], row["notices"]) == (
                0,
                row["ids"],
                0,
                0,
            ), receipt_no
            untouched += 1
    return applied, untouched


def applied_events(engine: Engine) -> list[dict[str, Any]]:
    """The details of every ``applied`` audit event (``via``, ``user_ids`` …)."""
    with engine.connect() as conn:
        details = conn.execute(
            text("SELECT detail FROM audit_event WHERE event = 'applied' ORDER BY id")
        ).scalars()
        return [json.loads(d) if isinstance(d, str) else d for d in details]


def no_id_applied_twice(engine: Engine) -> None:
    seen = [uid for detail in applied_events(engine) for uid in detail["user_ids"]]
    assert len(seen) == len(set(seen))


def scheduler_lock_holders(url: str) -> int:
    """How many sessions hold this schema's scheduler lock (PostgreSQL): what an operator sees
    in ``pg_locks``. The 64-bit advisory key shows as classid (high half) and objid (low)."""
    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute("SELECT current_schema()").fetchone()
        assert row is not None
        key = advisory_key(str(row[0])) & 0xFFFF_FFFF_FFFF_FFFF
        held = pg.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (key >> 32, key & 0xFFFF_FFFF),
        ).fetchone()
        assert held is not None
        return int(held[0])
