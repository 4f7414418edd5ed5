"""The operator's command line, run as a real process: output, --json, and exit codes
(0 ok, 1 refused or not found, 2 bad usage or settings)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from mailbot.cli import main
from tests.conftest import EXAMPLES


class Cli:
    """Runs ``mailbot.cli.main`` as the console script does, in this process (fast), with the
    environment a real invocation would have; ``run`` starts a real process where the bytes on
    stdin/stdout matter."""

    def __init__(self, home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.env = {"MAILBOT_HOME": str(home), "MAILBOT_DATABASE_URL": database_url}
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str) -> Result:
        for name, value in self.env.items():
            self.monkeypatch.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main(list(args))
        code = exited.value.code
        assert "Traceback" not in err.getvalue()
        return Result(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def run(self, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "mailbot", *args],
            env={**os.environ, **self.env},
            input=input,
            capture_output=True,
            timeout=60,
        )
        assert b"Traceback" not in result.stderr, result.stderr
        return result


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    runner = Cli(tmp_path / "home", database_url, monkeypatch)
    assert runner("db", "upgrade").returncode == 0
    return runner


def test_registry_import_and_show(cli: Cli) -> None:
    result = cli("registry", "import", str(EXAMPLES / "registry-demo.csv"))
    assert result.returncode == 0
    assert "imported 2 offices and 6 user IDs" in result.stdout
    shown = cli.json("registry", "show", "1anac-a0a")
    assert isinstance(shown, dict)
    assert shown["user_id"] == "1ANACA0A" and shown["user_code"]["shared"] is True
    text = cli("registry", "show", "OSK01")
    assert text.returncode == 0 and "2BXYZ001" in text.stdout
    missing = cli("registry", "show", "NOPE1")
    assert missing.returncode == 1 and "not a user ID" in missing.stderr


def test_bad_registry_file_exits_1_with_the_line(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "office_code,company,office,department,contact_emails,user_id\n"
        "TYO01,Co,Office,Dept,a@example.jp,1ANAC-A0\n"
    )
    result = cli("registry", "import", str(bad))
    assert result.returncode == 1
    assert "line 2" in result.stderr and "nothing was imported" in result.stderr


def test_schedule_import_and_list(cli: Cli) -> None:
    assert cli("schedule", "import", str(EXAMPLES / "schedule-demo.txt")).returncode == 0
    listed = cli.json("schedule", "list", "--all")
    assert isinstance(listed, dict)
    assert [entry["date"] for entry in listed["dates"]] == [
        "2026-12-01",
        "2026-12-08",
        "2026-12-15",
        "2026-12-22",
        "2027-01-12",
        "2027-01-19",
        "2027-01-26",
    ]


def test_schedule_list_marks_the_earliest_date_a_request_can_get(cli: Cli) -> None:
    assert cli("schedule", "import", str(EXAMPLES / "schedule-demo.txt")).returncode == 0
    # Friday 2026-11-27 with the default lead of 4 business days: the earliest start date is
    # Thursday 12/3, so 12/1 is too soon and 12/8 the first registration date to get.
    listed = cli.json("schedule", "list", "--as-of", "2026-11-27")
    assert isinstance(listed, dict)
    assert listed["earliest_start"] == "2026-12-03"
    assert listed["earliest_registration_date"] == "2026-12-08"
    assert listed["dates"][:3] == [
        {"date": "2026-12-01", "earliest": False, "too_soon": True},
        {"date": "2026-12-08", "earliest": True, "too_soon": False},
        {"date": "2026-12-15", "earliest": False, "too_soon": False},
    ]
    text = cli("schedule", "list", "--as-of", "2026-11-27").stdout.splitlines()
    assert text[:3] == [
        "2026-12-01  (too soon)",
        "2026-12-08  <- earliest for a request sent 2026-11-27",
        "2026-12-15",
    ]
    # Across the year-end closure: from Friday 12/25 the 4 business days are 12/28, 1/4, 1/5,
    # 1/6, so 1/12 is the earliest and 12/22 is already past (not listed without --all).
    text = cli("schedule", "list", "--as-of", "2026-12-25").stdout.splitlines()
    assert text[0] == "2027-01-12  <- earliest for a request sent 2026-12-25"
    # After the schedule ends, the list says so.
    late = cli("schedule", "list", "--as-of", "2027-01-22").stdout.splitlines()
    assert late == [
        "2027-01-26  (too soon)",
        "(no date on or after 2027-01-28, the earliest start date)",
    ]


def test_staff_add_list_remove(cli: Cli) -> None:
    assert cli("staff", "add", "Reviewer@Example.JP", "--name", "審査 花子").returncode == 0
    assert cli.json("staff", "list") == [
        {"email": "reviewer@example.jp", "name": "審査 花子", "active": True}
    ]
    assert cli("staff", "remove", "reviewer@example.jp").returncode == 0
    assert cli.json("staff", "list") == []
    assert cli("staff", "remove", "nobody@example.jp").returncode == 1


def test_ids_show_and_can(cli: Cli) -> None:
    cli("registry", "import", str(EXAMPLES / "registry-demo.csv"))
    state = cli.json("ids", "show", "1ANAC001")
    assert isinstance(state, dict)
    assert state["network"] == "general" and state["status"] == "active"
    assert cli("ids", "can", "1ANAC001", "business").returncode == 0
    unknown_op = cli("ids", "can", "1ANAC001", "fly")
    assert unknown_op.returncode == 2
    assert cli("ids", "can", "ZZZZZZZZ", "business").returncode == 1


def test_abolished_id_may_only_do_management_statistics_from_its_date(
    cli: Cli, database_url: str
) -> None:
    from db.engine import make_engine, session_scope
    from db.models import UserId

    cli("registry", "import", str(EXAMPLES / "registry-demo.csv"))
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        user = session.get(UserId, "1ANACA0A")
        assert user is not None
        user.status, user.abolished_on = "abolished", date(2026, 12, 15)
        session.add(user)
    engine.dispose()
    before = cli("ids", "can", "1ANACA0A", "business", "--as-of", "2026-12-14")
    assert before.returncode == 0
    refused = cli("ids", "can", "1ANACA0A", "business", "--as-of", "2026-12-15")
    assert refused.returncode == 1 and refused.stdout.strip()
    stats = cli("ids", "can", "1ANACA0A", "management_statistics", "--as-of", "2026-12-15")
    assert stats.returncode == 0


def test_bad_setting_exits_2_naming_it(cli: Cli) -> None:
    cli.env["MAILBOT_LEAD_BUSINESS_DAYS"] = "soon"
    result = cli("staff", "list")
    assert result.returncode == 2
    assert "MAILBOT_LEAD_BUSINESS_DAYS" in result.stderr


def test_unknown_command_is_usage_error(cli: Cli) -> None:
    assert cli("frobnicate").returncode == 2


def test_status_of_unknown_receipt_is_not_found(cli: Cli) -> None:
    result = cli("status", "269999Z")
    assert result.returncode == 1 and "269999Z" in result.stderr


def test_ingest_stores_and_the_inbound_commands_show_it(cli: Cli) -> None:
    raw = (EXAMPLES.parent / "tests" / "samples" / "request-body-utf8.eml").read_bytes()
    result = cli.run("ingest", "--sender", "yamada@example.co.jp", "-", input=raw)
    assert result.returncode == 0, result.stderr
    listed = cli.json("inbound", "list")
    assert isinstance(listed, list) and listed[0]["status"] == "pending"
    assert listed[0]["envelope_to"] == ["apply@mailbot.localhost"]
    shown = cli.run("inbound", "show", str(listed[0]["id"]), "--raw")
    assert shown.stdout == raw
    refused = cli("inbound", "reprocess", str(listed[0]["id"]))
    assert refused.returncode == 1 and "not quarantined" in refused.stderr


def test_ingest_exits_75_when_it_cannot_store(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MAILBOT_HOME": str(tmp_path),
        # A database file inside a directory that is really a file: the store must fail.
        "MAILBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'afile' / 'x.db'}",
    }
    (tmp_path / "afile").write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "mailbot", "ingest", "-"],
        env=env,
        input=b"Subject: x\r\n\r\nbody\r\n",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 75
    assert b"Traceback" not in result.stderr


def test_apply_due_takes_a_batch_size_and_refuses_a_silly_one(cli: Cli) -> None:
    nothing = cli.json("apply-due", "--batch", "1")
    assert isinstance(nothing, dict) and nothing["applied"] == [] and nothing["failed"] == {}
    refused = cli("apply-due", "--batch", "0")
    assert refused.returncode == 2 and "--batch" in refused.stderr


def test_demo_init_outside_a_checkout_says_where_demo_data_comes_from(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An installed mailbot has no examples/ folder beside its package.
    monkeypatch.setattr("mailbot.demo.DEMO_REGISTRY", tmp_path / "nowhere" / "registry-demo.csv")
    assert cli("db", "upgrade").returncode == 0
    result = cli("demo", "init")
    assert result.returncode == 1
    assert "source checkout" in result.stderr and "registry import" in result.stderr
