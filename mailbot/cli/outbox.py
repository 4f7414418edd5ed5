"""``mailbot outbox``: outgoing mail, what was sent, what waits, what failed."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import click

from db.models import OUTBOUND_STATUSES
from mailbot.cli.common import emit, format_mapping, in_zone, json_option, runtime


@click.group()
def outbox() -> None:
    """Outgoing mail: what was sent, what waits, what failed."""


@outbox.command("list")
@click.option(
    "--status", "status_filter", type=click.Choice(OUTBOUND_STATUSES), help="Only this status."
)
@json_option
@click.pass_context
def outbox_list(ctx: click.Context, status_filter: str | None, as_json: bool) -> None:
    """Outgoing mail, oldest first (times in MAILBOT_TIMEZONE)."""
    from mailbot.outbox import list_outbox

    rt = runtime(ctx)
    with rt.session() as session:
        rows = [_zoned_outbox(r, rt.settings.zone) for r in list_outbox(session, status_filter)]
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['id']:>6}  {r['status']:<8} {r['kind']:<22} {r['recipient']}  {r['subject']}"
                + (f"  [{r['last_error']}]" if r.get("last_error") else "")
                for r in rs
            )
            or "(no outgoing mail)"
        ),
    )


@outbox.command("show")
@click.argument("outbound_id", type=int)
@json_option
@click.pass_context
def outbox_show(ctx: click.Context, outbound_id: int, as_json: bool) -> None:
    """One outgoing message: its state, attempts, last error and times."""
    from mailbot.outbox import outbox_row

    rt = runtime(ctx)
    with rt.session() as session:
        data = _zoned_outbox(outbox_row(session, outbound_id), rt.settings.zone)
    emit(data, as_json, format_mapping)


def _zoned_outbox(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    times = ("next_attempt_at", "created_at", "sent_at", "requeued_at", "raw_removed_at")
    return {key: in_zone(value, zone) if key in times else value for key, value in row.items()}


@outbox.command("retry")
@click.argument("outbound_id", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed message.")
@click.pass_context
def outbox_retry(ctx: click.Context, outbound_id: int | None, all_failed: bool) -> None:
    """Send a failed message (or all of them) again, with a fresh give-up time."""
    from mailbot.outbox import retry_failed, retry_outbox

    if (outbound_id is None) == (not all_failed):
        raise click.UsageError("give an outbox message ID or --failed (not both)")
    with runtime(ctx).session() as session:
        if outbound_id is not None:
            retry_outbox(session, outbound_id)
            ids = [outbound_id]
        else:
            ids = retry_failed(session)
    if not ids:
        click.echo("no failed messages")
    for queued in ids:
        click.echo(f"outgoing message {queued} queued again")
