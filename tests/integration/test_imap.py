"""IMAP intake against a real Dovecot: stored once, settled after the commit, never twice.

Each test starts a private Dovecot (``tests/support/dovecot.py``) on a loopback port with a
Maildir under ``tmp_path``; storage-facing tests run on SQLite and PostgreSQL. The poller is
the real one: ``ImapIntake.run_once`` for single passes, ``run_imap`` (what ``mailbot serve``
runs) on an event loop thread for IDLE, polling, reconnects and stop.
"""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from db.engine import make_engine
from db.migrate import upgrade
from db.models import INBOUND_PENDING, InboundMessage
from mailbot.config import Settings, load_settings
from mailbot.gateway.imap import (
    STORED_FLAG,
    Backoff,
    DrainResult,
    ImapIntake,
    check_mailbox,
    envelope_recipients,
    run_imap,
)
from mailbot.gateway.imap_mailbox import (
    ImapError,
    ImapFatalError,
    ImapTarget,
    Mailbox,
    _secure,
    parse_imap_url,
    read_password,
)
from mailbot.gateway.store import StoreResult
from tests.support.dovecot import PASSWORD, Dovecot, running_dovecot
from tests.support.harness import Harness
from tests.support.loop import LoopThread
from tests.support.requests import INTAKE, SATO, YAMADA, form, mail

PROCESSED = "mailbot-processed"
RECEIPT = "利用申込受付完了のお知らせ"
NO_IDLE_NO_MOVE = "IMAP4rev1 LITERAL+ UIDPLUS"
BARE_IMAP4 = "IMAP4rev1 LITERAL+"


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with running_dovecot(tmp_path / "dovecot") as server:
        yield server


def imap_settings(tmp_path: Path, url: str, database_url: str = "", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "imap_url": url,
        "imap_password": PASSWORD,
        "imap_rescan_seconds": 30.0,
    }
    if database_url:
        values["database_url"] = database_url
    values.update(overrides)
    return load_settings(**values)


def message(n: int, *, extra: str = "") -> bytes:
    return (
        f"From: {YAMADA}\r\nTo: {INTAKE}\r\nSubject: test {n}\r\n"
        f"Message-ID: <imap-{n}@example.co.jp>\r\n{extra}\r\nbody {n}\r\n"
    ).encode()


def rows(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; return how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


class Died(Exception):
    """The process 'dies' here: nothing after this point of the pass runs."""


def die_after(count: int) -> Callable[[int, StoreResult], None]:
    stores = 0

    def hook(uid: int, result: StoreResult) -> None:
        nonlocal stores
        stores += 1
        if stores == count:
            raise Died(f"after store number {count} (UID {uid}, inbound {result.inbound_id})")

    return hook


@dataclass
class Serving:
    future: Future[None]
    stop: asyncio.Event
    wake: asyncio.Event
    loop: asyncio.AbstractEventLoop

    def finish(self, timeout: float = 10) -> float:
        """Set stop; return how long run_imap took to return."""
        started = time.monotonic()
        self.loop.call_soon_threadsafe(self.stop.set)
        self.future.result(timeout)
        return time.monotonic() - started


async def _events() -> tuple[asyncio.Event, asyncio.Event]:
    return asyncio.Event(), asyncio.Event()


@contextmanager
def serving(
    loop_thread: LoopThread, engine: Engine, settings: Settings, intake: ImapIntake | None = None
) -> Iterator[Serving]:
    """``run_imap`` as ``mailbot serve`` runs it, on the loop thread, stopped at the end."""
    stop, wake = loop_thread.run(_events())
    coroutine = run_imap(engine, settings, stop, wake, backoff=Backoff(0.05, 0.5), intake=intake)
    future = asyncio.run_coroutine_threadsafe(coroutine, loop_thread.loop)
    running = Serving(future, stop, wake, loop_thread.loop)
    try:
        yield running
    finally:
        if not future.done():
            running.finish()


def connected(caplog: pytest.LogCaptureFixture, times: int = 1) -> Callable[[], bool]:
    return lambda: caplog.text.count("IMAP intake connected") >= times


@pytest.fixture(autouse=True)
def _imap_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailbot.gateway.imap")


# --- a request by IMAP to its receipt notice -------------------------------------------------


def test_request_appended_to_inbox_gets_receipt_notice(
    harness: Harness, dovecot: Dovecot, tmp_path: Path, database_url: str
) -> None:
    settings = imap_settings(tmp_path, dovecot.url(), database_url)
    # One message nobody can parse goes first: it must not hold back the request after it.
    dovecot.append(b"\xff\xfe this is not a mail message\r\n\r\n\x01\x02\r\n")
    dovecot.append(mail(form("1ANACA0A", start="2026年12月15日")))

    assert ImapIntake(harness.engine, settings).run_once() == DrainResult(stored=2)
    harness.process()
    harness.deliver()

    notices = [m for m in harness.new_mail() if RECEIPT in str(m["Subject"])]
    assert sorted(m["To"].addresses[0].addr_spec for m in notices) == [SATO, YAMADA]
    assert {str(m["Subject"]) for m in notices} == {f"【NSS】{RECEIPT}（260001A）"}
    junk, request = harness.inbound()
    assert (request.channel, request.envelope_from, request.envelope_to) == ("imap", None, [INTAKE])
    assert junk.status != INBOUND_PENDING  # processed or quarantined, and the bytes kept
    assert dovecot.count("INBOX") == 0
    assert sorted(dovecot.messages(PROCESSED).values()) == sorted(
        [bytes(junk.raw), bytes(request.raw)]
    )


def test_the_delivering_servers_recipient_headers_become_the_envelope(
    engine: Engine, dovecot: Dovecot, tmp_path: Path
) -> None:
    reply_address = "apply+r260001a@mailbot.localhost"
    headers = f"X-Original-To: {reply_address}\r\nDelivered-To: box@mail.example.jp\r\n"
    dovecot.append(message(1, extra=headers))
    dovecot.append(message(2, extra="Delivered-To: box@mail.example.jp\r\n"))

    ImapIntake(engine, imap_settings(tmp_path, dovecot.url())).run_once()

    assert [row.envelope_to for row in rows(engine)] == [[reply_address], [INTAKE]]


# --- wake-up: IDLE, and polling where the server has none --------------------------------------


def test_idle_stores_a_new_message_within_seconds_and_stops_promptly(
    engine: Engine,
    dovecot: Dovecot,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The rescan is 30 s away, so only IDLE can explain a store within a few seconds.
    settings = imap_settings(tmp_path, dovecot.url(), imap_rescan_seconds=30.0)
    with serving(loop_thread, engine, settings) as poller:
        wait_until(connected(caplog), 5, "the poller connected")
        time.sleep(0.5)  # let it enter IDLE
        dovecot.append(message(1))
        took = wait_until(lambda: len(rows(engine)) == 1, 5, "the message stored")
        assert took < 3
        wait_until(poller.wake.is_set, 1, "the intake worker woken")
        wait_until(lambda: dovecot.count(PROCESSED) == 1, 3, "the message moved")
        assert poller.finish() < 2  # stop is seen between IDLE slices
    assert "IDLE" in caplog.text


def test_mail_arriving_during_a_pass_is_not_left_for_the_rescan(
    engine: Engine, dovecot: Dovecot, tmp_path: Path, loop_thread: LoopThread
) -> None:
    # The server announces such mail in the answer to a command of the pass, not in IDLE.
    settings = imap_settings(tmp_path, dovecot.url(), imap_rescan_seconds=30.0)
    arrived: list[int] = []

    def arrive(uid: int, result: StoreResult) -> None:
        if not arrived:
            arrived.append(dovecot.append(message(2)))

    dovecot.append(message(1))
    with serving(loop_thread, engine, settings, ImapIntake(engine, settings, after_store=arrive)):
        wait_until(lambda: len(rows(engine)) == 2, 5, "the message that came during the pass")


def test_mail_arriving_as_idle_starts_is_not_left_for_the_rescan(
    engine: Engine,
    dovecot: Dovecot,
    tmp_path: Path,
    loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server announces it right behind "+ idling", in the same packet.
    settings = imap_settings(tmp_path, dovecot.url(), imap_rescan_seconds=30.0)
    original = Mailbox.idle_start
    arrived: list[int] = []

    def arriving(self: Mailbox) -> bool:
        if not arrived:
            arrived.append(dovecot.append(message(1)))
        return original(self)

    monkeypatch.setattr(Mailbox, "idle_start", arriving)
    with serving(loop_thread, engine, settings):
        wait_until(lambda: len(rows(engine)) == 1, 5, "the message that came with IDLE")


def test_idle_is_left_for_a_rescan_at_the_latest_after_the_idle_limit(
    tmp_path: Path, dovecot: Dovecot, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'idle.db'}")
    upgrade(engine)
    idles: list[float] = []
    original = Mailbox.idle_start

    def counted(self: Mailbox) -> bool:
        idles.append(time.monotonic())
        return original(self)

    monkeypatch.setattr(Mailbox, "idle_start", counted)
    # MAILBOT_IMAP_IDLE_SECONDS below the rescan interval: IDLE must be re-issued at that pace.
    settings = imap_settings(tmp_path, dovecot.url(), imap_rescan_seconds=30, imap_idle_seconds=0.3)
    with serving(loop_thread, engine, settings):
        wait_until(lambda: len(idles) >= 4, 5, "IDLE issued again and again")
    engine.dispose()
    assert max(b - a for a, b in itertools.pairwise(idles)) < 1.5


@pytest.mark.parametrize(
    ("capabilities", "features"),
    [(NO_IDLE_NO_MOVE, "(plain; UIDPLUS)"), (BARE_IMAP4, "(plain; no IDLE, MOVE or UIDPLUS)")],
)
def test_server_without_idle_or_move_is_polled_and_copied(
    engine: Engine,
    tmp_path: Path,
    loop_thread: LoopThread,
    capabilities: str,
    features: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_dovecot(tmp_path / "dovecot", capabilities=capabilities) as server:
        settings = imap_settings(tmp_path, server.url(), imap_rescan_seconds=0.3)
        with serving(loop_thread, engine, settings):
            wait_until(connected(caplog), 5, "the poller connected")
            server.append(message(1))
            server.append(message(2))
            wait_until(lambda: len(rows(engine)) == 2, 5, "both messages stored")
            # COPY + \Deleted + (UID) EXPUNGE instead of MOVE.
            wait_until(lambda: server.count("INBOX") == 0, 5, "the folder emptied")
            assert server.count(PROCESSED) == 2
    assert features in caplog.text


# --- no loss, no repeat -------------------------------------------------------------------------


@pytest.mark.parametrize("after_store", ["move", "flag"])
def test_crash_between_store_and_settle_leads_to_one_application(
    harness: Harness, dovecot: Dovecot, tmp_path: Path, database_url: str, after_store: str
) -> None:
    settings = imap_settings(tmp_path, dovecot.url(), database_url, imap_after_store=after_store)
    uid = dovecot.append(mail(form("1ANACA0A", start="2026年12月15日")))

    with pytest.raises(Died):
        ImapIntake(harness.engine, settings, after_store=die_after(1)).run_once()
    assert len(harness.inbound()) == 1  # committed before the 'crash'
    assert STORED_FLAG.encode() not in dovecot.flags()[uid]  # …but not settled
    assert dovecot.count("INBOX") == 1

    # The restarted poller fetches it again; the store recognises it; now it is settled.
    assert ImapIntake(harness.engine, settings).run_once() == DrainResult(duplicates=1)
    assert len(harness.inbound()) == 1
    if after_store == "move":
        assert (dovecot.count("INBOX"), dovecot.count(PROCESSED)) == (0, 1)
    else:
        assert STORED_FLAG.encode() in dovecot.flags()[uid]
    assert ImapIntake(harness.engine, settings).run_once() == DrainResult()

    harness.process()
    harness.deliver()
    assert [a.receipt_no for a in harness.applications()] == ["260001A"]
    assert len([m for m in harness.new_mail() if RECEIPT in str(m["Subject"])]) == 2


@pytest.mark.parametrize("after_store", ["move", "flag"])
def test_new_uidvalidity_means_a_full_rescan_without_duplicates(
    engine: Engine,
    dovecot: Dovecot,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
    after_store: str,
) -> None:
    settings = imap_settings(tmp_path, dovecot.url(), imap_after_store=after_store)
    with serving(loop_thread, engine, settings):
        dovecot.append(message(1))
        dovecot.append(message(2))
        wait_until(lambda: len(rows(engine)) == 2, 5, "two messages stored")
        wait_until(lambda: _settled(dovecot, after_store) == 2, 5, "both settled")
        # The mailbox is restored from a backup taken before mailbot saw it: the same
        # messages, unsettled again, under a new UIDVALIDITY (Dovecot drops the session).
        _restore_unsettled(dovecot, after_store)
        dovecot.set_uidvalidity(dovecot.uidvalidity() + 1000)
        dovecot.append(message(3))
        wait_until(lambda: len(rows(engine)) == 3, 10, "the new message stored")
        wait_until(lambda: _settled(dovecot, after_store) == 3, 5, "all settled again")
    assert "UIDVALIDITY of" in caplog.text
    assert len({row.sha256 for row in rows(engine)}) == 3


def _settled(server: Dovecot, after_store: str) -> int:
    if after_store == "flag":
        return sum(STORED_FLAG.encode() in flags for flags in server.flags().values())
    # A restored message moved a second time is a second copy of the same bytes.
    return len(set(server.messages(PROCESSED).values())) if server.count("INBOX") == 0 else -1


def _restore_unsettled(server: Dovecot, after_store: str) -> None:
    if after_store == "flag":
        server.remove_flag(STORED_FLAG)
    else:
        server.append_many(server.messages(PROCESSED).values())


def test_server_restart_mid_session_reconnects_and_continues(
    engine: Engine,
    dovecot: Dovecot,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = imap_settings(tmp_path, dovecot.url())
    with serving(loop_thread, engine, settings):
        wait_until(connected(caplog), 5, "the poller connected")
        dovecot.append(message(1))
        wait_until(lambda: len(rows(engine)) == 1, 5, "the first message stored")
        dovecot.restart(pause=0.3)  # BYE to every session, then nobody listening for a while
        dovecot.append(message(2))
        wait_until(lambda: len(rows(engine)) == 2, 10, "the second message stored")
        wait_until(lambda: dovecot.count(PROCESSED) == 2, 5, "both moved")
    assert "reconnecting in" in caplog.text
    assert connected(caplog, times=2)()


def test_thousand_messages_processed_exactly_once_across_a_crash(
    engine: Engine, dovecot: Dovecot, tmp_path: Path
) -> None:
    settings = imap_settings(tmp_path, dovecot.url())
    dovecot.append_many(message(n) for n in range(1000))

    # Dies after the 450th store: batches of 100 commit together, so 400 are moved and the
    # fifth batch is committed but not moved.
    with pytest.raises(Died):
        ImapIntake(engine, settings, after_store=die_after(450)).run_once()
    assert (len(rows(engine)), dovecot.count("INBOX")) == (500, 600)

    assert ImapIntake(engine, settings).run_once() == DrainResult(stored=500, duplicates=100)
    stored = rows(engine)
    assert len(stored) == len({row.sha256 for row in stored}) == 1000
    assert {row.message_id for row in stored} == {f"<imap-{n}@example.co.jp>" for n in range(1000)}
    assert (dovecot.count("INBOX"), dovecot.count(PROCESSED)) == (0, 1000)
    assert ImapIntake(engine, settings).run_once() == DrainResult()


def test_message_above_the_size_limit_is_left_and_reported_once(
    engine: Engine, dovecot: Dovecot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = imap_settings(tmp_path, dovecot.url(), max_message_bytes=2048)
    dovecot.append(message(1, extra="X-Padding: " + "x" * 4000 + "\r\n"))
    dovecot.append(message(2))
    intake = ImapIntake(engine, settings)

    assert intake.run_once() == DrainResult(stored=1, skipped=1)
    assert intake.run_once() == DrainResult(skipped=1)
    assert caplog.text.count("above MAILBOT_MAX_MESSAGE_BYTES") == 1
    assert dovecot.count("INBOX") == 1


def test_large_messages_travel_alone_and_keep_their_order(
    engine: Engine, dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = "X-Padding: " + "x" * (200 * 1024) + "\r\n"  # above SMALL_MESSAGE_BYTES
    dovecot.append_many(
        [message(1), message(2), message(3, extra=big), message(4), message(5, extra=big)]
    )
    fetched: list[int] = []
    original = Mailbox.fetch_bodies

    def counted(self: Mailbox, uids: Sequence[int]) -> tuple[dict[int, bytes], dict[int, str]]:
        fetched.append(len(uids))
        return original(self, uids)

    monkeypatch.setattr(Mailbox, "fetch_bodies", counted)
    assert ImapIntake(engine, imap_settings(tmp_path, dovecot.url())).run_once().stored == 5
    assert fetched == [2, 1, 1, 1]
    assert [row.message_id for row in rows(engine)] == [
        f"<imap-{n}@example.co.jp>" for n in range(1, 6)
    ]


def test_a_message_the_server_will_not_hand_out_does_not_hold_back_the_rest(
    engine: Engine,
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.append_many([message(1), message(2), message(3)])
    original = Mailbox._bodies

    def refusing(self: Mailbox, uids: Sequence[int]) -> dict[int, bytes]:
        if 2 in uids:  # as Dovecot answers for a message file it cannot read
            raise imaplib.IMAP4.error("fetch failed: [SERVERBUG] Internal error occurred")
        return original(self, uids)

    monkeypatch.setattr(Mailbox, "_bodies", refusing)
    intake = ImapIntake(engine, imap_settings(tmp_path, dovecot.url()))

    assert intake.run_once() == DrainResult(stored=2, skipped=1)
    assert intake.run_once() == DrainResult(skipped=1)
    assert caplog.text.count("UID 2 could not be fetched (fetch failed: [SERVERBUG]") == 1
    assert [row.message_id for row in rows(engine)] == [
        "<imap-1@example.co.jp>",
        "<imap-3@example.co.jp>",
    ]
    assert dovecot.count("INBOX") == 1


# --- failures that need an operator ----------------------------------------------------------


def test_wrong_password_stops_the_imap_side_without_a_retry_storm(
    dovecot: Dovecot, tmp_path: Path, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    settings = imap_settings(tmp_path, dovecot.url(), imap_password="wrong")
    engine = make_engine(f"sqlite:///{tmp_path / 'unused.db'}")  # never reached
    with serving(loop_thread, engine, settings) as poller:
        wait_until(lambda: "IMAP intake stopped" in caplog.text, 10, "the refusal logged")
        time.sleep(1.0)  # the reconnect backoff (0.05 s here) must not retry a refused login
        assert not poller.future.done()  # it waits MAILBOT_IMAP_REFUSED_RETRY_SECONDS (15 min)
    engine.dispose()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "IMAP intake stopped" in errors[0].getMessage()
    assert "[AUTHENTICATIONFAILED]" in errors[0].getMessage()
    assert "tries again in 900 s" in errors[0].getMessage()
    assert dovecot.log().count("auth failed") == 1

    with pytest.raises(ImapFatalError, match=r"refused: \[AUTHENTICATIONFAILED\]"):
        check_mailbox(settings)


def test_a_refused_login_is_tried_again_later_and_intake_resumes(
    dovecot: Dovecot,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
    engine: Engine,
    database_url: str,
) -> None:
    """The operator fixes the password on the server; no restart is needed."""
    dovecot.set_password("changed")
    settings = imap_settings(tmp_path, dovecot.url(), database_url, imap_refused_retry_seconds=1.0)
    dovecot.append(message(1))
    with serving(loop_thread, engine, settings):
        wait_until(lambda: "IMAP intake stopped" in caplog.text, 10, "the refusal logged")
        dovecot.set_password(PASSWORD)
        wait_until(lambda: len(rows(engine)) == 1, 15, "the message stored once it logs in")
    assert dovecot.log().count("auth failed") >= 1


def test_check_shows_folder_counts_and_changes_nothing(dovecot: Dovecot, tmp_path: Path) -> None:
    dovecot.append(message(1))
    dovecot.append(message(2))
    result = check_mailbox(imap_settings(tmp_path, dovecot.url()))

    assert (result.messages, result.pending, result.processed_messages) == (2, 2, None)
    assert result.security == "plain"
    assert {"IDLE", "MOVE", "UIDPLUS"} <= set(result.features)
    text = "\n".join(result.lines())
    assert "2 message(s), 2 not yet stored" in text
    assert "does not exist yet" in text
    assert dovecot.count(PROCESSED) == 0  # check creates nothing
    assert all(b"\\Seen" not in flags for flags in dovecot.flags().values())


def test_check_names_a_missing_folder(dovecot: Dovecot, tmp_path: Path) -> None:
    with pytest.raises(ImapFatalError, match="folder 'Requests' does not exist"):
        check_mailbox(imap_settings(tmp_path, dovecot.url("Requests")))


def test_check_reports_an_unreachable_server(tmp_path: Path) -> None:
    from tests.support.dovecot import free_port

    url = f"imap://mailbot@127.0.0.1:{free_port()}/INBOX"
    with pytest.raises(ImapError, match=r"cannot connect to .*refused"):
        check_mailbox(imap_settings(tmp_path, url))


def test_tls_and_starttls_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_dovecot(tmp_path / "dovecot", tls=True) as server:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(ImapFatalError, match=r"certificate of 127\.0\.0\.1 is not trusted"):
            check_mailbox(imap_settings(tmp_path, server.url(scheme="imaps")))

        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))  # trust the test's own CA
        assert check_mailbox(imap_settings(tmp_path, server.url(scheme="imaps"))).security == "TLS"
        assert check_mailbox(imap_settings(tmp_path, server.url())).security == "STARTTLS"


# --- settings and small pure parts ------------------------------------------------------------


def test_imap_url_forms() -> None:
    assert parse_imap_url("imaps://box%40example.jp@mail.example.jp/INBOX") == ImapTarget(
        "imaps", "mail.example.jp", 993, "box@example.jp", "INBOX"
    )
    assert parse_imap_url("imap://u@127.0.0.1:1143").folder == "INBOX"
    assert parse_imap_url("imap://u@h/%E7%94%B3%E8%BE%BC").folder == "申込"
    assert str(parse_imap_url("imaps://u@h:10993/A/B")) == "imaps://u@h:10993/A/B"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("pop3://u@h/INBOX", "must start with imaps://"),
        ("imaps://u:secret@h/INBOX", "must not contain the password"),
        ("imaps://h/INBOX", "needs a user and a host"),
        ("imaps://u@h:99999/INBOX", "bad port"),
    ],
)
def test_bad_imap_urls_are_refused_with_the_setting_named(url: str, complaint: str) -> None:
    from mailbot.errors import ConfigError

    with pytest.raises(ConfigError, match=complaint) as raised:
        parse_imap_url(url)
    assert "MAILBOT_IMAP_URL" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_password_from_file_keeps_spaces_drops_the_line_end(tmp_path: Path) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text(" pass word \n")
    settings = load_settings(home=tmp_path, imap_url="imap://u@h/", imap_password_file=secret)
    assert read_password(settings) == " pass word "


def test_plain_imap_to_a_remote_host_is_refused() -> None:
    class NoStartTls:
        def has_capability(self, name: str) -> bool:
            return False

    target = parse_imap_url("imap://u@mail.example.jp/INBOX")
    with pytest.raises(ImapFatalError, match="offers no STARTTLS"):
        _secure(NoStartTls(), target)
    assert _secure(NoStartTls(), parse_imap_url("imap://u@127.0.0.1/INBOX")) == "plain"


def test_envelope_recipients_keep_only_own_addresses(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    raw = (
        b"Delivered-To: Apply@Mailbot.Localhost\r\nX-Original-To: apply+tABC@mailbot.localhost\r\n"
        b"Delivered-To: other@example.jp\r\nSubject: x\r\n\r\nDelivered-To: apply+r1@mailbot.localhost\r\n"
    )
    assert envelope_recipients(raw, settings) == [
        "Apply@Mailbot.Localhost",
        "apply+tABC@mailbot.localhost",
    ]
    folded = b"X-Original-To:\r\n apply+r1@mailbot.localhost\r\n\r\n"
    assert envelope_recipients(folded, settings) == ["apply+r1@mailbot.localhost"]
    assert envelope_recipients(b"Subject: x\r\n\r\n", settings) == [settings.intake_address]
