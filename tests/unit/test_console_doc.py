"""docs/console.md is true: it lists every console route and every console setting with its
default, as the code has them."""

from __future__ import annotations

import re
from pathlib import Path

from mailbot.config import Settings
from mailbot.console import routes
from mailbot.console.queues import QUEUES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text(encoding="utf-8")


def _shape(path: str) -> str:
    return re.sub(r"\{\w+\}", "{}", path)


def test_every_console_route_is_in_the_pages_table() -> None:
    listed = {
        (method, _shape(path))
        for method, path in re.findall(r"^\| `(GET|POST) (/staff[^`]*)` \|", DOC, re.MULTILINE)
    }
    served = set()
    for route in routes():
        paths = [route.path]
        if route.path == "/staff/queues/{name}":  # one row per queue
            paths = [f"/staff/queues/{name}" for name in QUEUES]
        for method in route.methods or ():
            if method != "HEAD" and route.path != "/staff":
                served |= {(method, _shape(path)) for path in paths}
    assert listed == served


def test_every_console_setting_is_in_the_settings_table_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `MAILBOT_(CONSOLE_\w+)` \| `([^`]*)` \|", DOC, re.MULTILINE))
    fields = Settings.model_fields
    console = {name for name in fields if name.startswith("console_")}
    assert {name.lower() for name in rows} == console
    for name, default in rows.items():
        assert f"{fields[name.lower()].default:g}" == default, name
