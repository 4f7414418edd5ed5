"""docs/security.md and the reply limits in docs/operations.md say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from mailbot.config import Settings
from mailbot.mime import FREE_BOUNDARIES, MAX_BOUNDARY_CHECKS
from mailbot.reply_limits import OUTSIDER_REPLIES_PER_DAY, OUTSIDER_REPLY_MAX_BYTES

OUTSIDER_REPLIES_PER_HOUR = Settings.model_fields["outsider_replies_per_hour"].default

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _flat(name: str) -> str:
    return " ".join((DOCS / name).read_text(encoding="utf-8").split())


def test_every_item_of_issue_13_has_its_row() -> None:
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    numbered = re.findall(r"^\| (\d) \| \*\*", text, re.M)
    assert numbered == [str(n) for n in range(1, 10)]


def test_the_documented_reply_limits_are_the_code_s() -> None:
    assert OUTSIDER_REPLIES_PER_DAY == 1  # "one reply a day" below
    operations = _flat("operations.md")
    assert "Anyone else gets **one** reply a day" in operations
    assert f"at most {OUTSIDER_REPLY_MAX_BYTES // 1024} KB as queued" in operations
    assert f"at most {OUTSIDER_REPLIES_PER_HOUR} an hour" in operations
    security = _flat("security.md")
    assert f"at most **{OUTSIDER_REPLIES_PER_DAY}** reply a day" in security
    assert f"at most {OUTSIDER_REPLY_MAX_BYTES // 1024} KB as queued" in security
    assert f"at most {OUTSIDER_REPLIES_PER_HOUR} replies an hour" in security


def test_the_documented_parser_bound_is_the_code_s() -> None:
    millions = MAX_BOUNDARY_CHECKS // 1_000_000
    operations = _flat("operations.md")
    assert (
        f"more than {FREE_BOUNDARIES} multipart boundaries over more than {millions} million"
        in operations
    )
    security = _flat("security.md")
    assert (
        f"More than {FREE_BOUNDARIES} boundary declarations × the number of lines over "
        f"{millions} million" in security
    )
