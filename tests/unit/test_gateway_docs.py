"""docs/operations.md ("Limits", "Trusted relays and Authentication-Results") and the README
say what the gateway does: the documented defaults are the code's, the example trace header is
the one the gateway writes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mailbot.config import Settings
from mailbot.gateway.trace import received_header

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return OPERATIONS.split(f"### {title}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def default(variable: str) -> object:
    return Settings.model_fields[variable.removeprefix("MAILBOT_").lower()].default


def test_the_documented_limits_are_the_defaults() -> None:
    rows = re.findall(r"^\| `(MAILBOT_[A-Z_]+)` \| `([^`]+)` \|", section("Limits"), re.M)
    assert [name for name, _ in rows] == [
        "MAILBOT_SMTP_MAX_SESSIONS",
        "MAILBOT_SMTP_MAX_SESSIONS_PER_CLIENT",
        "MAILBOT_SMTP_MAX_DATA",
        "MAILBOT_SMTP_MAX_DATA_PER_CLIENT",
        "MAILBOT_SMTP_DATA_WAIT_SECONDS",
    ]
    for name, documented in rows:
        assert float(documented) == default(name), name


def test_the_readme_rows_give_the_same_defaults() -> None:
    for base in ("MAILBOT_SMTP_MAX_SESSIONS", "MAILBOT_SMTP_MAX_DATA"):
        found = re.search(rf"^\| `{base}` / `_PER_CLIENT` \| `(\d+)` / `(\d+)` \|", README, re.M)
        assert found, base
        assert int(found.group(1)) == default(base)
        assert int(found.group(2)) == default(base + "_PER_CLIENT")
    assert (
        f"| `MAILBOT_SMTP_DATA_WAIT_SECONDS` | `{default('MAILBOT_SMTP_DATA_WAIT_SECONDS'):.0f}` |"
        in README
    )
    assert (
        "| `MAILBOT_TRUSTED_RELAYS` | unset |" in README and default("MAILBOT_TRUSTED_RELAYS") == ""
    )
    assert "| `MAILBOT_REVIEW_ENVELOPE_CHECK` | `true` |" in README
    assert default("MAILBOT_REVIEW_ENVELOPE_CHECK") is True


def test_the_example_trace_header_is_the_gateways() -> None:
    block = re.search(
        r"```\n(Received: .*?)```", section("Trusted relays and Authentication-Results"), re.S
    )
    assert block, "no Received example"
    written = received_header(
        helo="mx.example.net",
        client="192.0.2.25",
        by="mailbot.example.jp",
        esmtp=True,
        tls=True,
        trace_id="3f2a9c0b1d4e5f60",
        when=datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=9))),
    )
    assert written.decode().replace("\r\n", "\n") == block.group(1)
