"""``mailbot inbound``: received messages, looked at and retried."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from db.models import INBOUND_STATUSES
from mailbot.cli.common import emit, format_mapping, in_zone, json_option, runtime
from mailbot.clock import utc_now
from mailbot.errors import MailbotError


@click.group()
def inbound() -> None:
    """Received messages: look at them, and retry quarantined ones."""


@inbound.command("list")
@click.option(
    "--status", "status_filter", type=click.Choice(INBOUND_STATUSES), help="Only this status."
)
@click.option("--limit", default=100, show_default=True)
@json_option
@click.pass_context
def inbound_list(ctx: click.Context, status_filter: str | None, limit: int, as_json: bool) -> None:
    """Received messages, newest first (times in MAILBOT_TIMEZONE)."""
    from mailbot.worker import list_inbound

    rt = runtime(ctx)
    with rt.session() as session:
        rows = [
            _inbound_dict(m, rt.settings.zone) for m in list_inbound(session, status_filter, limit)
        ]
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['id']:>6}  {r['status']:<11} {r['kind'] or '-':<11} {r['received_at']}  "
                f"{r['envelope_from'] or '<>'}  {(r['error'] or '').splitlines()[-1:] or ''}"
                for r in rs
            )
            or "(no messages)"
        ),
    )


@inbound.command("show")
@click.argument("inbound_id", type=int)
@click.option("--raw", is_flag=True, help="Print the raw message bytes.")
@json_option
@click.pass_context
def inbound_show(ctx: click.Context, inbound_id: int, raw: bool, as_json: bool) -> None:
    from mailbot.worker import get_inbound

    rt = runtime(ctx)
    with rt.session() as session:
        message = get_inbound(session, inbound_id)
        if raw:
            if message.raw_removed_at is not None:
                raise MailbotError(
                    f"the raw bytes of message {inbound_id} were removed on "
                    f"{in_zone(message.raw_removed_at, rt.settings.zone)} (retention, see "
                    "MAILBOT_RETAIN_RAW_DAYS); `mailbot inbound show` has what was kept"
                )
            sys.stdout.buffer.write(bytes(message.raw))
            return
        data = _inbound_dict(message, rt.settings.zone)
    emit(data, as_json, format_mapping)


@inbound.command("reprocess")
@click.argument("inbound_id", type=int, required=False)
@click.option("--quarantined", "all_quarantined", is_flag=True, help="Every quarantined message.")
@click.pass_context
def inbound_reprocess(ctx: click.Context, inbound_id: int | None, all_quarantined: bool) -> None:
    """Queue a quarantined message (or all of them) again; the running worker picks it up."""
    from sqlmodel import col, select

    from db.models import INBOUND_QUARANTINED, InboundMessage
    from mailbot.worker import requeue

    if (inbound_id is None) == (not all_quarantined):
        raise click.UsageError("give a message ID or --quarantined (not both)")
    with runtime(ctx).session() as session:
        if inbound_id is not None:
            wanted = [inbound_id]
        else:
            query = select(InboundMessage.id).where(InboundMessage.status == INBOUND_QUARANTINED)
            wanted = [i for i in session.exec(query.order_by(col(InboundMessage.id))) if i]
        ids = [requeue(session, wanted_id).id for wanted_id in wanted]
    if not ids:
        click.echo("no quarantined messages")
    for queued in ids:
        click.echo(f"message {queued} queued again")


@inbound.command("purge")
@click.option(
    "--before",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="All processed mail from before this day (in MAILBOT_TIMEZONE); "
    "default: what MAILBOT_RETAIN_RAW_DAYS and MAILBOT_RETAIN_OUTSIDER_DAYS say.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@json_option
@click.pass_context
def inbound_purge(ctx: click.Context, before: Any, dry_run: bool, as_json: bool) -> None:
    """Remove the raw bytes of processed mail (headers, hash and audit trail stay); quarantined
    and unprocessed mail is kept. The scheduler does this daily."""
    from mailbot.retention import RetentionPolicy, purge

    rt = runtime(ctx)
    now = utc_now()
    if before is None:
        policy = RetentionPolicy.from_settings(rt.settings, now)
    else:
        day_start = datetime.combine(before.date(), datetime.min.time(), rt.settings.zone)
        policy = RetentionPolicy.everything_before(day_start.astimezone(UTC))
    report = purge(rt.engine, policy, now=now, notices=before is None, dry_run=dry_run, actor="cli")
    text = ("would have " if dry_run else "") + report.describe()
    emit({**report.as_dict(), "dry_run": dry_run}, as_json, lambda _: text)


def _inbound_dict(message: Any, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": message.id,
        "received_at": in_zone(message.received_at, zone),
        "channel": message.channel,
        "envelope_from": message.envelope_from,
        "envelope_to": message.envelope_to,
        "message_id": message.message_id,
        "size": message.size,
        "status": message.status,
        "kind": message.kind,
        "attempts": message.attempts,
        "error": message.error,
        "processed_at": in_zone(message.processed_at, zone),
        "raw_removed_at": in_zone(message.raw_removed_at, zone),
        "headers": message.headers,
    }
