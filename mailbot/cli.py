"""The operator's command line. Thin: each command opens a session and calls one service.

Exit codes are the operators' contract: 0 ok, 1 refused or not found, 2 bad usage or settings.
Errors from mailbot print as one line without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError

from mailbot.config import load_settings
from mailbot.errors import MailbotError
from mailbot.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

# The statuses `--status` accepts (a wrong one is a usage error listing these, exit 2).
APPLICATION_STATUSES = ("under_review", "approved", "rejected", "withdrawn", "cancelled", "applied")
INBOUND_STATUSES = ("pending", "processing", "done", "quarantined")
OUTBOUND_STATUSES = ("pending", "sent", "failed", "bounced")

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
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(zone).isoformat(timespec="seconds")


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


pass_runtime = click.make_pass_decorator(Runtime)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mailbot")
def cli() -> None:
    """mailbot: NACCS user-ID abolition requests by email (利用者IDの廃止申込)."""


# --- db ----------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the tables to the current version."""
    from db.migrate import current_revision, upgrade
    from mailbot.keys import ensure_signing_key

    rt = runtime(ctx)
    upgrade(rt.engine)
    click.echo(f"database at revision {current_revision(rt.engine)}")
    click.echo(ensure_signing_key(rt.engine, rt.settings))


@db.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, path: Path) -> None:
    """Copy the SQLite database (and the signing keys in it) to PATH while mailbot runs."""
    from mailbot.backup import backup_database

    made = backup_database(runtime(ctx).engine, path)
    click.echo(f"backed up to {made.path} ({made.size_bytes} bytes, integrity checked)")


# --- keys --------------------------------------------------------------------------------------
@cli.group()
def keys() -> None:
    """The keys that sign links and reply addresses (kept in the database; never shown)."""


@keys.command("rotate")
@json_option
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Make a new current key; old keys verify until what they signed has expired."""
    from datetime import UTC, datetime

    from mailbot.keys import rotate

    rt = runtime(ctx)
    now = datetime.now(UTC)
    described = rotate(rt.engine, rt.settings, now)
    _keys_override_note(rt)
    old = [_zoned_key(k.as_dict(now), rt) for k in described[1:] if k.verifies(now)]
    emit({"current": described[0].id, "verifying": old}, as_json, _format_rotation)


def _format_rotation(data: dict[str, Any]) -> str:
    lines = [f"key {data['current']} is now the current key (new links and replies use it)"]
    for k in data["verifying"]:
        lines.append(f"key {k['id']} still verifies until {k['verifies_until']}")
    return "\n".join(lines)


@keys.command("list")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every key: id, created, age, current or retired, until when it verifies."""
    from datetime import UTC, datetime

    from mailbot.keys import describe

    rt = runtime(ctx)
    now = datetime.now(UTC)
    with rt.session() as session:
        described = [_zoned_key(k.as_dict(now), rt) for k in describe(session, rt.settings)]
    _keys_override_note(rt)
    emit(described, as_json, _format_keys)


def _zoned_key(key: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    times = ("created_at", "retired_at", "verifies_until")
    return {
        name: in_zone(value, rt.settings.zone) if name in times else value
        for name, value in key.items()
    }


def _format_keys(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no signing keys: run `mailbot db upgrade`"
    lines = [f"{'id':>4}  {'created':<25}  {'age (days)':>10}  {'state':<8}  verifies until"]
    for k in rows:
        until = k["verifies_until"] or "-"
        if not k["verifies"]:
            until += " (no longer)"
        lines.append(
            f"{k['id']:>4}  {k['created_at']:<25}  {k['age_days']:>10}  {k['state']:<8}  {until}"
        )
    return "\n".join(lines)


def _keys_override_note(rt: Runtime) -> None:
    if rt.settings.secret_key is not None:
        click.echo(
            "note: MAILBOT_SECRET_KEY is set, so it alone signs and verifies; these keys are "
            "used once it is removed",
            err=True,
        )


# --- registry ----------------------------------------------------------------------------------
@cli.group()
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
    emit(data, as_json, _format_mapping)


# --- schedule ----------------------------------------------------------------------------------
@cli.group()
def schedule() -> None:
    """The schedule table of system registration dates."""


@schedule.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Make the file the whole schedule.")
@click.pass_context
def schedule_import(ctx: click.Context, file: Path, replace: bool) -> None:
    """Load registration dates, one YYYY-MM-DD a line."""
    from mailbot.schedule_table import import_schedule

    with runtime(ctx).session() as session:
        count = import_schedule(session, file, replace=replace)
    click.echo(f"imported {count} registration dates")


@schedule.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include dates in the past.")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Mark the earliest date for a request sent on this day (default: today).",
)
@json_option
@click.pass_context
def schedule_list(ctx: click.Context, show_all: bool, as_of: Any, as_json: bool) -> None:
    """List registration dates (from today on, unless --all), marking the earliest one a
    request sent today can get (MAILBOT_LEAD_BUSINESS_DAYS)."""
    from mailbot.schedule_table import registration_dates
    from mailbot.upcoming import upcoming

    rt = runtime(ctx)
    today: date = as_of.date() if as_of else rt.today()
    lead = rt.settings.lead_business_days
    with rt.session() as session:
        days = registration_dates(session, on_or_after=None if show_all else today)
    marked = upcoming(days, rt.calendar, today, lead, count=len(days))
    past = [{"date": d.isoformat(), "earliest": False, "too_soon": True} for d in days if d < today]
    data = {
        "as_of": today.isoformat(),
        "lead_business_days": lead,
        "earliest_start": marked.earliest_start.isoformat(),
        "earliest_registration_date": (
            marked.earliest_registration.isoformat() if marked.earliest_registration else None
        ),
        "dates": past
        + [
            {"date": e.day.isoformat(), "earliest": e.earliest, "too_soon": e.too_soon}
            for e in marked.dates
        ],
    }
    emit(data, as_json, _format_schedule)


def _format_schedule(data: dict[str, Any]) -> str:
    lines = []
    for entry in data["dates"]:
        mark = ""
        if entry["earliest"]:
            mark = f"  <- earliest for a request sent {data['as_of']}"
        elif entry["too_soon"]:
            mark = "  (too soon)"
        lines.append(entry["date"] + mark)
    if data["earliest_registration_date"] is None:
        lines.append(f"(no date on or after {data['earliest_start']}, the earliest start date)")
    return "\n".join(lines) or "(no dates)"


@schedule.command("jobs")
@json_option
@click.pass_context
def schedule_jobs(ctx: click.Context, as_json: bool) -> None:
    """Pending applies with their run times, and whether their date job is set."""
    from datetime import UTC, datetime

    from scheduler.listing import format_jobs, jobs_as_dict, list_scheduled

    rt = runtime(ctx)
    with rt.session() as session:
        rows, stale = list_scheduled(
            session, rt.settings.zone, rt.settings.apply_time, datetime.now(UTC)
        )
    emit(jobs_as_dict(rows, stale), as_json, lambda _: format_jobs(rows, stale))


# --- staff -------------------------------------------------------------------------------------
@cli.group()
def staff() -> None:
    """Staff members who review applications."""


@staff.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.pass_context
def staff_add(ctx: click.Context, email: str, name: str) -> None:
    from mailbot.staff import add_staff

    with runtime(ctx).session() as session:
        member = add_staff(session, email, name)
    click.echo(f"staff {member.email} active")


@staff.command("remove")
@click.argument("email")
@click.pass_context
def staff_remove(ctx: click.Context, email: str) -> None:
    """Deactivate a member: their tokens stop working at once."""
    from mailbot.staff import remove_staff

    with runtime(ctx).session() as session:
        member = remove_staff(session, email)
    click.echo(f"staff {member.email} removed")


@staff.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include removed members.")
@json_option
@click.pass_context
def staff_list(ctx: click.Context, include_inactive: bool, as_json: bool) -> None:
    from mailbot.staff import list_staff

    with runtime(ctx).session() as session:
        members = list_staff(session, include_inactive=include_inactive)
        data = [{"email": m.email, "name": m.name, "active": m.active} for m in members]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['email']}\t{r['name']}\t{'active' if r['active'] else 'removed'}" for r in rows
            )
            or "(no staff)"
        ),
    )


# --- ids ---------------------------------------------------------------------------------------
@cli.group()
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
    emit(data, as_json, _format_mapping)


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


# --- applications ------------------------------------------------------------------------------
@cli.command()
@click.argument("receipt_no")
@json_option
@click.pass_context
def status(ctx: click.Context, receipt_no: str, as_json: bool) -> None:
    """Show one application with its audit events."""
    from mailbot.applications import application_summary, find_application

    rt = runtime(ctx)
    with rt.session() as session:
        application = find_application(session, receipt_no)
        data = application_summary(session, application, rt.settings.zone)
    emit(data, as_json, _format_application)


@cli.command("list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(APPLICATION_STATUSES),
    help="Only applications in this status.",
)
@json_option
@click.pass_context
def list_command(ctx: click.Context, status_filter: str | None, as_json: bool) -> None:
    """List applications, oldest first."""
    from mailbot.applications import application_summaries, list_applications

    rt = runtime(ctx)
    with rt.session() as session:
        data = application_summaries(
            session, list_applications(session, status_filter), rt.settings.zone
        )
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['receipt_no']}  {r['status']:<12} {r['office_code']:<8} "
                f"{','.join(r['user_ids'])}  start {r['start_date'] or r['proposed_start_date']}"
                for r in rows
            )
            or "(no applications)"
        ),
    )


@cli.command()
@click.argument("receipt_no")
@click.option("--by", "by", required=True, help="The deciding staff member's address.")
@click.option(
    "--start-date", default=None, help="Confirmed start date (default: the proposed one)."
)
@click.option("--force", is_flag=True, help="Approve with a start date that is not a business day.")
@click.pass_context
def approve(
    ctx: click.Context, receipt_no: str, by: str, start_date: str | None, force: bool
) -> None:
    """Approve an application under review (same rules and audit as a reply by mail)."""
    from mailbot.decisions import Action, Decision

    if start_date is not None:
        _check_start_date(runtime(ctx), start_date, force)
    _decide(ctx, receipt_no, by, Decision(Action.APPROVE, start_date_text=start_date))


def _check_start_date(rt: Runtime, text: str, force: bool) -> None:
    """A start date on a weekend, holiday or the year-end closure is refused without --force;
    one that is no system registration date is allowed, with a warning."""
    from mailbot.calendar import next_registration_date
    from mailbot.dates import InvalidDate, parse_date
    from mailbot.schedule_table import registration_dates

    try:
        day = parse_date(text)
    except InvalidDate:
        return  # the decision itself says what is wrong with it
    weekday = day.strftime("%A")
    if not rt.calendar.is_business_day(day):
        if not force:
            raise MailbotError(
                f"{day} is a {weekday} that is not a business day (weekend, holiday or the "
                "12/29–1/3 closure); give a business day, or add --force to approve with it"
            )
        click.echo(
            f"warning: {day} ({weekday}) is not a business day; approved with --force", err=True
        )
    with rt.session() as session:
        dates = registration_dates(session, on_or_after=None)
    if day not in dates:
        nearest = next_registration_date(dates, day)
        hint = f"; the next one is {nearest}" if nearest else "; the schedule has none after it"
        click.echo(
            f"warning: {day} ({weekday}) is not a system registration date in the schedule{hint}",
            err=True,
        )


@cli.command()
@click.argument("receipt_no")
@click.option("--by", "by", required=True, help="The deciding staff member's address.")
@click.option("--reason", required=True, help="Told to the applicant.")
@click.pass_context
def reject(ctx: click.Context, receipt_no: str, by: str, reason: str) -> None:
    """Reject an application under review, with the reason the applicant will read."""
    from mailbot.decisions import Action, Decision

    _decide(ctx, receipt_no, by, Decision(Action.REJECT, reason=reason))


def _decide(ctx: click.Context, receipt_no: str, by: str, decision: Any) -> None:
    from datetime import UTC, datetime

    from mailbot.applications import find_application
    from mailbot.review import ReviewContext, decide
    from mailbot.staff import find_staff

    rt = runtime(ctx)
    review = ReviewContext(settings=rt.settings, calendar=rt.calendar, now=datetime.now(UTC))
    with rt.session() as session:
        application = find_application(session, receipt_no)
        result = decide(session, review, application, find_staff(session, by), decision, via="cli")
        status = application.status
    click.echo(f"{application.receipt_no}: {result} (status {status})")


@cli.command("apply-due")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only start dates up to this day (a later day: with --dry-run only).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Applications per transaction (default 5000); smaller holds SQLite's lock shorter.",
)
@json_option
@click.pass_context
def apply_due_command(
    ctx: click.Context, as_of: Any, dry_run: bool, batch: int | None, as_json: bool
) -> None:
    """Apply approved applications whose start date has come (the scheduler does this too)."""
    from datetime import UTC, datetime

    from mailbot.applying import DEFAULT_BATCH, apply_due, format_report

    rt = runtime(ctx)
    report = apply_due(
        rt.engine,
        rt.settings,
        datetime.now(UTC),
        apply_time=rt.settings.apply_time,
        dry_run=dry_run,
        through=as_of.date() if as_of else None,
        batch_size=batch or DEFAULT_BATCH,
        via="cli",
    )
    emit(report.as_dict(), as_json, lambda _: format_report(report))
    ctx.exit(1 if report.failed else 0)


@cli.command()
@click.argument("receipt_no")
@click.option("--by", required=True, help="The cancelling staff member's address.")
@click.option("--reason", required=True, help="Told to the applicant.")
@click.pass_context
def cancel(ctx: click.Context, receipt_no: str, by: str, reason: str) -> None:
    """Cancel an approved application before its start date (staff only)."""
    from datetime import UTC, datetime

    from mailbot.cancel import cancel_application

    rt = runtime(ctx)
    with rt.session() as session:
        application = cancel_application(
            session,
            rt.settings,
            receipt_no,
            by=by,
            reason=reason,
            now=datetime.now(UTC),
            apply_time=rt.settings.apply_time,
        )
        click.echo(
            f"{application.receipt_no}: cancelled (its start date was {application.start_date})"
        )


# --- inbound -----------------------------------------------------------------------------------
@cli.command()
@click.argument("file", default="-", type=click.File("rb"))
@click.option("--sender", default=None, help="Envelope sender (Postfix ${sender}).")
@click.option("--recipient", "recipients", multiple=True, help="Envelope recipient(s).")
@click.pass_context
def ingest(ctx: click.Context, file: Any, sender: str | None, recipients: tuple[str, ...]) -> None:
    """Store one message from FILE or stdin (for a mail server's pipe). Exit 0 once stored,
    75 (EX_TEMPFAIL) when it could not be stored, so the mail server retries."""
    from mailbot.gateway.pipe import EX_TEMPFAIL, ingest_stream

    try:
        rt = runtime(ctx)
        code = ingest_stream(
            rt.engine,
            file,
            settings=rt.settings,
            envelope_from=sender,
            envelope_to=list(recipients) or [rt.settings.intake_address],
        )
    except Exception as exc:  # a broken set-up must defer the mail, never bounce or lose it
        click.echo(f"mailbot: cannot store the message, retry later: {exc}", err=True)
        code = EX_TEMPFAIL
    ctx.exit(code)


@cli.group()
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
    emit(data, as_json, _format_mapping)


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
    now = datetime.now(UTC)
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


# --- outbox ------------------------------------------------------------------------------------
@cli.group()
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
    emit(data, as_json, _format_mapping)


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


# --- imap --------------------------------------------------------------------------------------
@cli.group()
def imap() -> None:
    """The IMAP mailbox mailbot reads (MAILBOT_IMAP_URL)."""


@imap.command("check")
@json_option
@click.pass_context
def imap_check(ctx: click.Context, as_json: bool) -> None:
    """Log in, show the folder and its counts; exit non-zero with the server's reason."""
    from dataclasses import asdict

    from mailbot.gateway.imap import check_mailbox

    result = check_mailbox(runtime(ctx).settings)
    emit(asdict(result), as_json, lambda _: "\n".join(result.lines()))


# --- the blank form --------------------------------------------------------------------------
@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["xlsx", "csv", "csv-table", "text"]),
    default="xlsx",
    show_default=True,
    help="csv: vertical form (label, value); csv-table: one row per user ID.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def form(fmt: str, output: Path | None) -> None:
    """Write the blank request form applicants fill in (to FILE, or its own name)."""
    from mailbot.blank_form import write_blank_form

    filename, _content_type, data = write_blank_form(fmt)  # type: ignore[arg-type]
    target = output or Path(filename)
    target.write_bytes(data)
    click.echo(f"wrote {target}")


# --- documents ---------------------------------------------------------------------------------
@cli.command()
@click.argument("kind", type=click.Choice(["approval-notice", "application-form"]))
@click.argument("receipt_no")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PDF.",
)
@click.pass_context
def document(ctx: click.Context, kind: str, receipt_no: str, output: Path) -> None:
    """Write an application's approval notice (from its start date on) or form as PDF."""
    from datetime import UTC, datetime

    from mailbot.documents import document_context, produce_document

    rt = runtime(ctx)
    with rt.session() as session:
        context = document_context(session, receipt_no, rt.settings)
    output.write_bytes(produce_document(kind, context, datetime.now(UTC)))
    click.echo(f"{output}: {kind} of {context.receipt_no}")


# --- demo --------------------------------------------------------------------------------------
@cli.group()
def demo() -> None:
    """Demo data for trying mailbot out (used by `make run`)."""


@demo.command("init")
@click.pass_context
def demo_init(ctx: click.Context) -> None:
    """Load the demo registry, an upcoming schedule and a staff member, if the registry is empty."""
    from mailbot.demo import init_demo

    rt = runtime(ctx)
    with rt.session() as session:
        loaded = init_demo(session, rt.today(), rt.calendar)
    click.echo("demo data loaded" if loaded else "registry already has data; demo data not loaded")


@demo.command("howto")
@click.pass_context
def demo_howto(ctx: click.Context) -> None:
    """Print how to send the running mailbot a request."""
    from mailbot.demo import howto

    click.echo(howto(runtime(ctx).settings))


@demo.command("send")
@click.pass_context
def demo_send(ctx: click.Context) -> None:
    """Send the running mailbot a demo request from yamada@example.co.jp (demo registry)."""
    from mailbot.demo import demo_request, send_demo_request

    rt = runtime(ctx)
    try:
        send_demo_request(rt.settings, demo_request(rt.settings, rt.today(), rt.calendar))
    except OSError as exc:
        raise MailbotError(
            f"cannot reach mailbot at {rt.settings.smtp_address} ({exc}); is `make run` running?"
        ) from None
    click.echo(f"demo request sent to {rt.settings.intake_address}; see: mailbot outbox list")


# --- config ------------------------------------------------------------------------------------
@cli.group()
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


# --- serve -------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--only",
    metavar="ROLE[,ROLE…]",
    help="Run only these parts: smtp, worker, outbox, scheduler, web, imap (default: all; "
    "imap when MAILBOT_IMAP_URL is set). Processes with any roles may share one database.",
)
@click.pass_context
def serve(ctx: click.Context, only: str | None) -> None:
    """Run mailbot: upgrade the database, then receive, process and send mail until stopped."""
    from mailbot.app import parse_roles
    from mailbot.app import serve as run_serve

    roles = None if only is None else parse_roles(only)  # a typo is refused before anything runs
    run_serve(runtime(ctx), roles)


def _format_application(data: dict[str, Any]) -> str:
    lines = [
        f"{data['receipt_no']}  {data['status_ja']} ({data['status']})",
        f"office:        {data['office_code']}",
        f"user IDs:      {', '.join(data['user_ids'])}",
        f"user codes:    {', '.join(data['user_codes']) or '-'}",
        f"desired start: {data['desired_start_date']}",
        f"proposed:      {data['proposed_start_date']}",
        f"start date:    {data['start_date'] or '-'}",
        f"applicant:     {data['applicant']['name']} <{data['applicant']['email']}> "
        f"{data['applicant']['phone']}",
        f"manager:       {data['manager']['name']} <{data['manager']['email']}>",
        f"reason:        {data['reason']}",
        f"remarks:       {data['remarks'] or '-'}",
        f"received:      {data['received_at']}",
    ]
    decision = data["decision"]
    if decision["by"]:
        lines.append(f"decided:       {decision['at']} by {decision['by']}")
    if decision["reason"]:
        lines.append(f"decision note: {decision['reason']}")
    lines.append("events:")
    lines += [f"  {e['at']}  {e['event']:<20} {e['actor']}" for e in data["events"]]
    return "\n".join(lines)


def _format_mapping(data: Any, indent: str = "") -> str:
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_format_mapping(value, indent + "  "))
        elif isinstance(value, list):
            shown = ", ".join(
                str(v) if not isinstance(v, dict) else v.get("user_id", str(v)) for v in value
            )
            lines.append(f"{indent}{key}: {shown}")
        else:
            lines.append(f"{indent}{key}: {'' if value is None else value}")
    return "\n".join(lines)


def _schema_behind() -> str | None:
    """After a database error: if the schema is not this version's, what to do about it."""
    from db.engine import make_engine
    from db.migrate import current_revision, head_revision

    try:
        engine = make_engine(load_settings().database_url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except Exception:  # the database itself is the problem; say that instead
        return None
    head = head_revision()
    if current == head:
        return None
    found = f"at revision {current}" if current else "without mailbot's tables"
    return (
        f"the database is {found}, and this mailbot needs revision {head}: "
        "run `mailbot db upgrade` (serve does it too)"
    )


def _database_failure(exc: DBAPIError) -> str:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return f"database error: {reason} (set MAILBOT_DEBUG=1 to see the traceback)"


def main(argv: list[str] | None = None) -> None:
    try:
        result = cli.main(args=argv, prog_name="mailbot", standalone_mode=False)
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except MailbotError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except DBAPIError as exc:
        not_upgraded = _schema_behind()
        if not_upgraded is None and os.environ.get("MAILBOT_DEBUG"):
            raise
        click.echo(f"mailbot: {not_upgraded or _database_failure(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the boundary: an operator gets one line, not a traceback
        if os.environ.get("MAILBOT_DEBUG"):
            raise
        click.echo(
            f"mailbot: unexpected error: {type(exc).__name__}: {exc} "
            "(set MAILBOT_DEBUG=1 to see the traceback)",
            err=True,
        )
        sys.exit(1)
