"""``mailbot db backup`` and the restore procedure of docs/operations.md, as an operator runs them.

The backup is taken while messages keep arriving; the restored database is a whole, checked
state; and because the signing keys live in the database, a link mailed before the backup
opens on the restored instance, which has no other copy of any key.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from db.engine import make_engine
from mailbot.config import HostPort, load_settings
from mailbot.gateway.store import store_message
from mailbot.web import WebServer, make_app
from tests.integration.test_web import Site, fetch, link_in, path_of, submit
from tests.support.harness import Harness
from tests.support.loop import LoopThread


def mailbot(home: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process, configured by environment only (as under systemd)."""
    env = {**os.environ, "MAILBOT_HOME": str(home), "MAILBOT_DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "mailbot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: backups are SQLite's (PostgreSQL's refusal is the last test)."""
    return f"sqlite:///{tmp_path / 'mailbot.db'}"


def test_backup_while_mail_arrives_is_a_whole_checked_copy(
    harness: Harness, database_url: str, tmp_path: Path
) -> None:
    stop = threading.Event()
    stored: list[int] = []

    def keep_storing() -> None:
        while not stop.is_set():
            raw = f"Subject: n{len(stored)}\r\n\r\nbody {len(stored)}\r\n".encode()
            store_message(
                harness.engine,
                raw,
                channel="smtp",
                envelope_from="a@example.jp",
                envelope_to=["apply@mailbot.localhost"],
            )
            stored.append(1)

    writer = threading.Thread(target=keep_storing)
    writer.start()
    try:
        while len(stored) < 20:  # the backup starts with writes in full flow
            threading.Event().wait(0.01)
        before = len(stored)
        result = mailbot(
            harness.settings.home, database_url, "db", "backup", str(tmp_path / "b.db")
        )
        after = len(stored)
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert "integrity checked" in result.stdout
    copy = sqlite3.connect(tmp_path / "b.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (rows,) = copy.execute("SELECT count(*) FROM inbound_message").fetchone()
        (journal,) = copy.execute("PRAGMA journal_mode").fetchone()
    finally:
        copy.close()
    assert before <= rows <= after + 1  # one consistent moment of the write stream
    assert journal == "delete"  # a standalone file, no WAL to forget beside it
    assert (tmp_path / "b.db").stat().st_mode & 0o777 == 0o600


def test_restore_by_the_documented_steps_keeps_links_working(
    harness: Harness, database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    link = link_in(submit(harness), "受付完了")
    backup = tmp_path / "mailbot-backup.db"
    assert mailbot(harness.settings.home, database_url, "db", "backup", str(backup)).returncode == 0

    # A new machine: another home, no key file, an old database and WAL in the way.
    home = tmp_path / "restored"
    home.mkdir()
    (home / "mailbot.db").write_bytes(b"an older database")
    (home / "mailbot.db-wal").write_bytes(b"its write-ahead log")
    # The restore steps of docs/operations.md: set the old files aside, copy, upgrade.
    aside = home / "before-restore"
    aside.mkdir()
    for name in ("mailbot.db", "mailbot.db-wal", "mailbot.db-shm"):
        if (home / name).exists():
            shutil.move(home / name, aside / name)
    shutil.copyfile(backup, home / "mailbot.db")
    restored_url = f"sqlite:///{home / 'mailbot.db'}"
    assert mailbot(home, restored_url, "db", "upgrade").returncode == 0
    assert not (home / "secret_key").exists()

    status = mailbot(home, restored_url, "status", "260001A")
    assert status.returncode == 0 and "under_review" in status.stdout
    restored = load_settings(home=home, database_url=restored_url)
    engine = make_engine(restored_url)
    app = make_app(engine, restored, clock=lambda: harness.now)
    server = WebServer(app, HostPort("127.0.0.1", 0))
    loop_thread.run(server.start())
    try:
        page = fetch(Site(server).url(path_of(link)))
    finally:
        loop_thread.run(server.stop())
        engine.dispose()
    assert page.status == 200
    assert "260001A" in page.text


def test_backup_never_overwrites(harness: Harness, database_url: str, tmp_path: Path) -> None:
    target = tmp_path / "there.db"
    target.write_bytes(b"precious")
    result = mailbot(harness.settings.home, database_url, "db", "backup", str(target))
    assert result.returncode == 1
    assert "exists" in result.stderr
    assert target.read_bytes() == b"precious"


@pytest.mark.postgres
def test_postgresql_backup_points_to_pg_dump(postgres_schema_url: str, tmp_path: Path) -> None:
    result = mailbot(tmp_path, postgres_schema_url, "db", "backup", str(tmp_path / "x.db"))
    assert result.returncode == 1
    assert "pg_dump" in result.stderr
    assert not (tmp_path / "x.db").exists()
