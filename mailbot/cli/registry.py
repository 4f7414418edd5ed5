"""``mailbot registry``: the registry of contracts (offices, contacts, user codes and IDs)."""

from __future__ import annotations

from pathlib import Path

import click

from mailbot.cli.common import emit, format_mapping, json_option, runtime


@click.group()
def registry() -> None:
    """The registry of contracts: offices, contacts, user codes and IDs."""


@registry.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def registry_import(ctx: click.Context, file: Path) -> None:
    """Load the registry CSV (UTF-8 or CP932). A bad row aborts the whole import."""
    from mailbot.registry import import_registry, terminal_progress

    with runtime(ctx).session() as session:
        summary = import_registry(session, file, terminal_progress())
    click.echo(
        f"imported {summary.offices} offices and {summary.user_ids} user IDs "
        f"({summary.new_user_ids} new)"
    )


@registry.command("show")
@click.argument("key")
@json_option
@click.pass_context
def registry_show(ctx: click.Context, key: str, as_json: bool) -> None:
    """Show a user ID, user code or office code."""
    from mailbot.registry import describe

    with runtime(ctx).session() as session:
        data = describe(session, key)
    emit(data, as_json, format_mapping)
