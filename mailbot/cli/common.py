"""What every command shares: the runtime a command opens on first use, ``--json``, printing
data as JSON or text, and times shown in MAILBOT_TIMEZONE."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

import click

from mailbot.clock import as_utc
from mailbot.config import load_settings
from mailbot.runtime import Runtime

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text(data))


def in_zone(moment: datetime | str | None, zone: tzinfo) -> str | None:
    """A stored time (UTC) as ISO 8601 in MAILBOT_TIMEZONE, with its offset."""
    if moment is None:
        return None
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return as_utc(value).astimezone(zone).isoformat(timespec="seconds")


def runtime(ctx: click.Context) -> Runtime:
    """Settings are read on first use, so ``--help`` works even with a broken configuration."""
    root = ctx.find_root()
    obj = root.obj
    if obj is None:
        obj = Runtime(load_settings())
        root.obj = obj
        root.call_on_close(obj.close)
    assert isinstance(obj, Runtime)
    return obj


def format_mapping(data: Any, indent: str = "") -> str:
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(format_mapping(value, indent + "  "))
        elif isinstance(value, list):
            shown = ", ".join(
                str(v) if not isinstance(v, dict) else v.get("user_id", str(v)) for v in value
            )
            lines.append(f"{indent}{key}: {shown}")
        else:
            lines.append(f"{indent}{key}: {'' if value is None else value}")
    return "\n".join(lines)
