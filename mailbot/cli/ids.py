"""``mailbot ids``: the state of a user ID, and what it may do on a day."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from mailbot.cli.common import emit, format_mapping, json_option, runtime


@click.group()
def ids() -> None:
    """The state of user IDs."""


@ids.command("show")
@click.argument("user_id")
@json_option
@click.pass_context
def ids_show(ctx: click.Context, user_id: str, as_json: bool) -> None:
    from mailbot.id_state import id_state

    rt = runtime(ctx)
    with rt.session() as session:
        data = id_state(session, user_id, rt.today())
    emit(data, as_json, format_mapping)


@ids.command("can")
@click.argument("user_id")
@click.argument("operation")
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), help="Judge on this date.")
@json_option
@click.pass_context
def ids_can(ctx: click.Context, user_id: str, operation: str, as_of: Any, as_json: bool) -> None:
    """Exit 0 if USER_ID may do OPERATION today, 1 if not (printing why)."""
    from mailbot.id_state import OPERATIONS, may_perform

    if operation not in OPERATIONS:
        raise click.BadParameter(f"choose one of {', '.join(OPERATIONS)}", param_hint="OPERATION")
    rt = runtime(ctx)
    today: date = as_of.date() if as_of else rt.today()
    with rt.session() as session:
        allowed, reason = may_perform(session, user_id, operation, today)
    emit({"allowed": allowed, "reason": reason}, as_json, lambda d: d["reason"])
    ctx.exit(0 if allowed else 1)
