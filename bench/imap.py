"""IMAP intake benchmark (not a test): how fast mailbot drains a mailbox of requests.

    .venv/bin/python bench/imap.py [--messages 1000] [--postgres URL | --no-postgres]

A private Dovecot (``tests/support/dovecot.py``: loopback, Maildir in a temporary directory;
needs root and ``dovecot-imapd``) holds ``--messages`` request mails (the demo form, UTF-8,
about 1.3 KB each). Each measurement starts from the same full INBOX:

(a) baseline: a bare imapclient session (SELECT, SEARCH, ``FETCH BODY.PEEK[]`` in batches
    of 100), keeping nothing and moving nothing: what reading the mailbox costs;
(b) the same plus ``MOVE`` of each batch: the IMAP work of mailbot's pass, without storing;
(c) ``ImapIntake.run_once()`` on SQLite (one commit per message, ``synchronous=FULL``), each
    message moved only after its batch is committed;
(d) the same on PostgreSQL (``--postgres``, default ``MAILBOT_TEST_POSTGRES_URL`` or the local
    test server; skipped when unreachable);
(e) ``store_message`` alone for the same messages on SQLite, no IMAP at all: the floor that
    (c) cannot beat while each message is committed before it is moved.

It prints a table (messages/s and the ratio to (a)) and removes everything it created.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support is not installed with the package

from imapclient import IMAPClient  # noqa: E402

from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from mailbot.config import load_settings  # noqa: E402
from mailbot.gateway.imap import ImapIntake  # noqa: E402
from mailbot.gateway.store import store_message  # noqa: E402
from tests.support.dovecot import PASSWORD, Dovecot, dovecot_available, start_dovecot  # noqa: E402
from tests.support.requests import INTAKE, form, mail  # noqa: E402

BATCH = 100
PROCESSED = "mailbot-processed"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Row:
    name: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def line(self, baseline: float) -> str:
        ratio = self.rate / baseline
        return f"{self.name:<44} {self.seconds:8.2f} {self.rate:9.0f} {ratio:11.2f}"


def requests(count: int) -> list[bytes]:
    # mail() gives each its own Message-ID, so every one is a distinct message to the store.
    return [mail(form("1ANACA0A", start="2026年12月15日")) for _ in range(count)]


def refill(server: Dovecot, raws: Sequence[bytes]) -> None:
    """An INBOX holding exactly ``raws`` and no processed folder: every run starts alike."""
    with server.client(None) as client:
        if client.folder_exists(PROCESSED):
            client.delete_folder(PROCESSED)
        client.select_folder("INBOX")
        uids = client.search("ALL")
        if uids:
            client.delete_messages(uids)
            client.expunge()
    server.append_many(raws)


def timed(run: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    count = run()
    return count, time.perf_counter() - started


def imapclient_drain(server: Dovecot, *, move: bool) -> int:
    """(a)/(b): what a plain imapclient loop costs, without mailbot."""
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60)
    try:
        client.login(server.user, server.password)
        if move and not client.folder_exists(PROCESSED):
            client.create_folder(PROCESSED)
        client.select_folder("INBOX")
        uids = sorted(client.search("ALL"))
        fetched = 0
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            fetched += len(client.fetch(batch, ["BODY.PEEK[]"]))
            if move:
                client.move(batch, PROCESSED)
        return fetched
    finally:
        client.logout()


def mailbot_drain(server: Dovecot, database_url: str, home: Path) -> tuple[int, float]:
    """(c)/(d): one ``run_once`` pass; the schema set-up before it is not timed."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        settings = load_settings(
            home=home, database_url=database_url, imap_url=server.url(), imap_password=PASSWORD
        )
        stored, seconds = timed(lambda: ImapIntake(engine, settings).run_once().stored)
    finally:
        engine.dispose()
    if server.count("INBOX") != 0:
        raise SystemExit("mailbot left messages in INBOX: the run is not comparable")
    return stored, seconds


def store_alone(raws: Sequence[bytes], database_url: str) -> tuple[int, float]:
    """(e): the same stores without IMAP: the floor a pass cannot go below."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)

        def store_all() -> int:
            for raw in raws:
                store_message(engine, raw, channel="imap", envelope_from=None, envelope_to=[INTAKE])
            return len(raws)

        return timed(store_all)
    finally:
        engine.dispose()


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str | None]:
    """A URL into a fresh schema (dropped afterwards), or None when the server is unreachable."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError:
        yield None
        return
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def dovecot_version() -> str:
    found = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return found.stdout.split()[0] if found.returncode == 0 else "?"


def measure(server: Dovecot, raws: Sequence[bytes], work: Path, postgres: str | None) -> list[Row]:
    n = len(raws)
    rows: list[Row] = []
    refill(server, raws)
    count, seconds = timed(lambda: imapclient_drain(server, move=False))
    rows.append(Row("(a) imapclient FETCH BODY.PEEK[] (baseline)", count, seconds))
    refill(server, raws)
    count, seconds = timed(lambda: imapclient_drain(server, move=True))
    rows.append(Row("(b) (a) + MOVE, nothing stored", count, seconds))
    refill(server, raws)
    count, seconds = mailbot_drain(server, f"sqlite:///{work / 'bench.db'}", work / "home")
    rows.append(Row("(c) mailbot pass, SQLite", count, seconds))
    if postgres is not None:
        with postgres_schema(postgres) as url:
            if url is None:
                print(f"(d) skipped: PostgreSQL at {postgres} is not reachable")
            else:
                refill(server, raws)
                count, seconds = mailbot_drain(server, url, work / "home")
                rows.append(Row("(d) mailbot pass, PostgreSQL", count, seconds))
    count, seconds = store_alone(raws, f"sqlite:///{work / 'alone.db'}")
    rows.append(Row("(e) store_message alone, SQLite, no IMAP", count, seconds))
    for row in rows:
        if row.messages != n:
            raise SystemExit(f"{row.name}: {row.messages} of {n} messages; not comparable")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MAILBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server for (d)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip (d)")
    args = parser.parse_args(argv)
    reason = dovecot_available()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    raws = requests(args.messages)
    size = sum(len(raw) for raw in raws) / len(raws)
    with tempfile.TemporaryDirectory(prefix="mailbot-bench-imap-") as tmp:
        work = Path(tmp)
        server = start_dovecot(work / "dovecot")
        try:
            rows = measure(server, raws, work, None if args.no_postgres else args.postgres)
        finally:
            server.close()
    print(
        f"IMAP intake: {args.messages} requests of {size / 1024:.1f} KB from a private Dovecot "
        f"{dovecot_version()} on 127.0.0.1; Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print()
    print(f"{'measurement':<44} {'seconds':>8} {'msg/s':>9} {'x baseline':>11}")
    baseline = rows[0].rate
    for row in rows:
        print(row.line(baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
