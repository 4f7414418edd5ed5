"""The operator's rough edges, on both databases: status filters that are choices, a database
that needs `mailbot db upgrade`, `status` with the reason and remarks, start-date checks on
`approve`, re-queueing all quarantined or failed mail at once, `outbox show`, `config show`
(where each value came from, secrets hidden), and times in MAILBOT_TIMEZONE with the offset."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from db.engine import session_scope
from db.migrate import upgrade
from db.models import (
    INBOUND_DONE,
    INBOUND_PENDING,
    INBOUND_QUARANTINED,
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    OUTBOUND_SENT,
    InboundMessage,
    OutboundMessage,
)
from mailbot.calendar import BusinessCalendar
from mailbot.compose import compose
from mailbot.config import Settings
from mailbot.outbox import enqueue
from tests.integration.test_cli import Cli
from tests.support.harness import STAFF, Harness
from tests.support.requests import form, mail

START = date(2026, 12, 15)


@pytest.fixture
def cli(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command line on the test's database (the one the harness uses too)."""
    runner = Cli(tmp_path / "home", database_url, monkeypatch)
    assert runner("db", "upgrade").returncode == 0
    return runner


# --- status filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "wrong", "listed"),
    [
        (("list",), "approve", "'approved'"),
        (("inbound", "list"), "quarantine", "'quarantined'"),
        (("outbox", "list"), "fail", "'failed'"),
    ],
)
def test_a_wrong_status_is_a_usage_error_listing_the_valid_ones(
    cli: Cli, command: tuple[str, ...], wrong: str, listed: str
) -> None:
    result = cli(*command, "--status", wrong)
    assert result.returncode == 2
    assert f"'{wrong}' is not one of" in result.stderr and listed in result.stderr
    assert result.stdout == ""


def test_a_right_status_filters(cli: Cli, engine: Engine) -> None:
    stored(engine, INBOUND_QUARANTINED)
    stored(engine, INBOUND_DONE)
    rows = cli.json("inbound", "list", "--status", "quarantined")
    assert isinstance(rows, list) and [r["status"] for r in rows] == ["quarantined"]


# --- a database that was never upgraded ---------------------------------------------------------


def test_a_database_never_upgraded_says_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    fresh = Cli(tmp_path / "fresh", database_url, monkeypatch)
    for command in (("list",), ("inbound", "list"), ("outbox", "list"), ("status", "260001A")):
        result = fresh(*command)
        assert result.returncode == 1, command
        assert "without mailbot's tables" in result.stderr
        assert "run `mailbot db upgrade`" in result.stderr
        assert "SELECT" not in result.stderr and "OperationalError" not in result.stderr


def test_a_database_of_an_older_version_names_its_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from db.engine import make_engine
    from db.migrate import head_revision

    engine = make_engine(database_url)
    upgrade(engine, "0005")
    engine.dispose()
    old = Cli(tmp_path / "old", database_url, monkeypatch)
    result = old("inbound", "list")
    assert result.returncode == 1
    assert f"at revision 0005, and this mailbot needs revision {head_revision()}" in result.stderr
    assert "run `mailbot db upgrade`" in result.stderr
    assert old("db", "upgrade").returncode == 0
    assert old("inbound", "list").returncode == 0


# --- status, approve ---------------------------------------------------------------------------


def submitted(h: Harness) -> str:
    h.round_trip(mail(form("1ANACA0A", start=START, remarks="端末は12月末に撤去予定です。")))
    (application,) = h.applications()
    return application.receipt_no


def test_status_shows_the_reason_remarks_and_times_in_the_zone(harness: Harness, cli: Cli) -> None:
    receipt = submitted(harness)
    text = cli("status", receipt)
    assert text.returncode == 0
    assert "reason:        事業所の統合により端末を削減するため" in text.stdout
    assert "remarks:       端末は12月末に撤去予定です。" in text.stdout
    # Received 2026-11-27 01:00 UTC: 10:00 in Tokyo, shown with the offset.
    assert "received:      2026-11-27T10:00:00+09:00" in text.stdout
    assert "2026-11-27T10:00:00+09:00  received" in text.stdout
    rejected = cli("reject", receipt, "--by", STAFF, "--reason", "利用者コードの全IDが必要です")
    assert rejected.returncode == 0
    after = cli("status", receipt)
    assert f"by {STAFF}" in after.stdout
    assert "decision note: 利用者コードの全IDが必要です" in after.stdout


def _after(start: date, wanted: object) -> date:
    calendar = BusinessCalendar()
    day = start
    while True:
        day += timedelta(days=1)
        if wanted == "sunday" and day.weekday() == 6:
            return day
        if wanted == "business" and calendar.is_business_day(day):
            return day


def test_approve_refuses_a_start_date_that_is_no_business_day_unless_forced(
    harness: Harness, cli: Cli
) -> None:
    receipt = submitted(harness)
    # Far enough ahead to be after today and past the demo schedule's last registration date.
    sunday = _after(max(date.today(), date(2027, 2, 1)), "sunday")
    refused = cli("approve", receipt, "--by", STAFF, "--start-date", sunday.isoformat())
    assert refused.returncode == 1
    assert f"{sunday} is a Sunday that is not a business day" in refused.stderr
    assert "--force" in refused.stderr
    assert cli.json("status", receipt)["status"] == "under_review"  # type: ignore[index]

    forced = cli("approve", receipt, "--by", STAFF, "--start-date", sunday.isoformat(), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "not a business day" in forced.stderr
    assert "not a system registration date" in forced.stderr
    shown = cli.json("status", receipt)
    assert isinstance(shown, dict)
    assert (shown["status"], shown["start_date"]) == ("approved", sunday.isoformat())


def test_approve_warns_on_a_business_day_that_is_no_registration_date(
    harness: Harness, cli: Cli
) -> None:
    receipt = submitted(harness)
    weekday = _after(max(date.today(), date(2027, 2, 1)), "business")
    result = cli("approve", receipt, "--by", STAFF, "--start-date", weekday.isoformat())
    assert result.returncode == 0, result.stderr
    assert f"warning: {weekday}" in result.stderr
    assert "is not a system registration date in the schedule" in result.stderr
    assert "approved" in result.stdout


def test_approve_on_a_registration_date_says_nothing_more(harness: Harness, cli: Cli) -> None:
    receipt = submitted(harness)
    result = cli("approve", receipt, "--by", STAFF)  # the proposed date: a registration date
    assert result.returncode == 0 and result.stderr == ""


# --- quarantined and failed mail, all at once --------------------------------------------------


def stored(engine: Engine, status: str, n: int = 0) -> int:
    with session_scope(engine) as session:
        row = InboundMessage(
            received_at=datetime(2026, 12, 6, 18, 33, 33, tzinfo=UTC),
            channel="smtp",
            envelope_from="yamada@example.co.jp",
            envelope_to=["apply@mailbot.localhost"],
            sha256=f"{status}-{n}".ljust(64, "0"),
            size=5,
            raw=b"x\r\n\r\n",
            status=status,
            error="Traceback …\nValueError: boom" if status == INBOUND_QUARANTINED else None,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def test_reprocess_quarantined_requeues_every_quarantined_message(cli: Cli, engine: Engine) -> None:
    quarantined = [stored(engine, INBOUND_QUARANTINED, n) for n in range(3)]
    done = stored(engine, INBOUND_DONE)
    result = cli("inbound", "reprocess", "--quarantined")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [f"message {i} queued again" for i in quarantined]
    with session_scope(engine) as session:
        statuses = dict(session.exec(select(InboundMessage.id, InboundMessage.status)).all())
    assert statuses == {**dict.fromkeys(quarantined, INBOUND_PENDING), done: INBOUND_DONE}
    again = cli("inbound", "reprocess", "--quarantined")
    assert again.returncode == 0 and again.stdout == "no quarantined messages\n"
    assert cli("inbound", "reprocess").returncode == 2  # neither an ID nor --quarantined
    assert cli("inbound", "reprocess", "1", "--quarantined").returncode == 2


def test_inbound_list_shows_times_in_the_zone(cli: Cli, engine: Engine) -> None:
    stored(engine, INBOUND_DONE)
    text = cli("inbound", "list")
    # Stored 2026-12-06T18:33:33 UTC: the request's 受付年月日 is 2026年12月7日, as shown here.
    assert "2026-12-07T03:33:33+09:00" in text.stdout
    rows = cli.json("inbound", "list")
    assert isinstance(rows, list) and rows[0]["received_at"] == "2026-12-07T03:33:33+09:00"


def queue_notice(engine: Engine, settings: Settings, n: int, status: str) -> int:
    created = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        composed = compose(
            settings,
            to=f"a{n}@example.co.jp",
            to_name="山田 太郎",
            subject=f"受付完了 {n}",
            body="本文\n",
            kind="receipt_complete",
            now=created,
        )
        row_id = enqueue(
            session,
            composed,
            kind="receipt_complete",
            dedupe_key=f"cli:{n}",
            recipient=f"a{n}@example.co.jp",
            now=created,
        )
        assert row_id is not None
        row = session.get(OutboundMessage, row_id)
        assert row is not None
        row.status, row.attempts = status, 40
        row.last_error = "relay 127.0.0.1:25: connection refused" if status == "failed" else None
        session.add(row)
    return row_id


def test_outbox_retry_failed_and_outbox_show(cli: Cli, engine: Engine, settings: Settings) -> None:
    failed = [queue_notice(engine, settings, n, OUTBOUND_FAILED) for n in range(3)]
    sent = queue_notice(engine, settings, 9, OUTBOUND_SENT)

    shown = cli("outbox", "show", str(failed[0]))
    assert shown.returncode == 0
    assert "status: failed" in shown.stdout and "attempts: 40" in shown.stdout
    assert "connection refused" in shown.stdout
    assert "created_at: 2026-12-07T03:00:00+09:00" in shown.stdout
    assert cli("outbox", "show", "999").returncode == 1

    result = cli("outbox", "retry", "--failed")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [f"outgoing message {i} queued again" for i in failed]
    with session_scope(engine) as session:
        rows = session.exec(select(OutboundMessage).order_by(col(OutboundMessage.id))).all()
    by_id = {row.id: row for row in rows}
    assert {i: by_id[i].status for i in failed} == dict.fromkeys(failed, OUTBOUND_PENDING)
    assert all(by_id[i].attempts == 0 and by_id[i].requeued_at for i in failed)
    assert by_id[sent].status == OUTBOUND_SENT
    assert cli("outbox", "retry", "--failed").stdout == "no failed messages\n"
    requeued = cli.json("outbox", "show", str(failed[0]))
    assert isinstance(requeued, dict) and requeued["requeued_at"].endswith("+09:00")


# --- config show -------------------------------------------------------------------------------


def test_config_show_names_each_source_and_hides_secrets(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "mailbot.toml"
    toml.write_text('domain = "mailbot.example.jp"\nlog_format = "json"\n')
    cli.env.update(
        {
            "MAILBOT_CONFIG": str(toml),
            "MAILBOT_IMAP_PASSWORD": "imap-secret-123",
            "MAILBOT_RELAY": "smtp://notices:relay-secret-456@relay.example.jp:587",
            "MAILBOT_LOG_LEVEL": "debug",
        }
    )
    text = cli("config", "show")
    assert text.returncode == 0
    assert "imap-secret-123" not in text.stdout and "relay-secret-456" not in text.stdout
    listed = cli.json("config", "show")
    assert isinstance(listed, list)
    rows = {row["name"]: row for row in listed}
    assert rows["imap_password"]["value"] == "(set, hidden)"
    assert rows["relay"]["value"] == "smtp://notices:***@relay.example.jp:587"
    assert rows["relay"]["source"] == "environment"
    assert (rows["log_level"]["value"], rows["log_level"]["source"]) == ("DEBUG", "environment")
    assert rows["domain"] == {
        "name": "domain",
        "variable": "MAILBOT_DOMAIN",
        "value": "mailbot.example.jp",
        "source": f"file {toml}",
    }
    assert rows["intake_address"]["value"] == "apply@mailbot.example.jp"
    assert rows["intake_address"]["source"] == "derived from domain"
    assert rows["secret_key"]["value"] == "(unset)"
    assert (rows["retain_raw_days"]["value"], rows["retain_raw_days"]["source"]) == (
        "90",
        "default",
    )
    assert json.dumps(rows, ensure_ascii=False).count("secret-") == 0


def test_keys_list_shows_times_in_the_zone(cli: Cli) -> None:
    keys = cli.json("keys", "list")
    assert isinstance(keys, list) and keys
    assert all(key["created_at"].endswith("+09:00") for key in keys)
    assert "+09:00" in cli("keys", "list").stdout


def test_keys_revoke_asks_for_yes_then_revokes_and_says_what_stopped_working(cli: Cli) -> None:
    unconfirmed = cli("keys", "revoke", "1")
    assert unconfirmed.returncode == 2
    assert "add --yes" in unconfirmed.stderr
    assert [k["state"] for k in keys_listed(cli)] == ["current"]  # nothing changed

    done = cli.json("keys", "revoke", "1", "--yes")
    assert done == {
        "revoked": 1,
        "already": False,
        "was_current": True,
        "current": 2,
        "reply_tokens_lost": 0,
    }
    assert [(k["id"], k["state"], k["verifies"]) for k in keys_listed(cli)] == [
        (2, "current", True),
        (1, "revoked", False),
    ]
    again = cli("keys", "revoke", "1", "--yes")
    assert again.returncode == 0 and "already revoked" in again.stdout
    unknown = cli("keys", "revoke", "7", "--yes")
    assert unknown.returncode != 0 and "no signing key 7" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def keys_listed(cli: Cli) -> list[dict[str, Any]]:
    listed = cli.json("keys", "list")
    assert isinstance(listed, list)
    return listed
