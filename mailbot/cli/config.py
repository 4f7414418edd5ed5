"""``mailbot config``: the settings in effect and where each came from."""

from __future__ import annotations

import click

from mailbot.cli.common import emit, json_option, runtime


@click.group()
def config() -> None:
    """mailbot's settings."""


@config.command("show")
@json_option
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Every setting's effective value and where it came from (secrets hidden)."""
    from mailbot.settings_report import effective_settings, format_settings

    rows = effective_settings(runtime(ctx).settings)
    emit([row.as_dict() for row in rows], as_json, lambda _: format_settings(rows))
