"""The commands about applications: ``status``, ``list``, ``approve``, ``reject``, ``cancel``
and ``apply-due``."""

from __future__ import annotations

from typing import Any

import click

from db.models import APPLICATION_STATUSES
from mailbot.cli.common import emit, json_option, runtime
from mailbot.errors import MailbotError
from mailbot.runtime import Runtime


@click.command()
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


@click.command("list")
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


@click.command()
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
    from mailbot.review import Action, Decision

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


@click.command()
@click.argument("receipt_no")
@click.option("--by", "by", required=True, help="The deciding staff member's address.")
@click.option("--reason", required=True, help="Told to the applicant.")
@click.pass_context
def reject(ctx: click.Context, receipt_no: str, by: str, reason: str) -> None:
    """Reject an application under review, with the reason the applicant will read."""
    from mailbot.review import Action, Decision

    _decide(ctx, receipt_no, by, Decision(Action.REJECT, reason=reason))


def _decide(ctx: click.Context, receipt_no: str, by: str, decision: Any) -> None:
    from mailbot.applications import find_application
    from mailbot.clock import utc_now
    from mailbot.review import ReviewContext, decide
    from mailbot.staff import find_staff

    rt = runtime(ctx)
    review = ReviewContext(settings=rt.settings, calendar=rt.calendar, now=utc_now())
    with rt.session() as session:
        application = find_application(session, receipt_no)
        result = decide(session, review, application, find_staff(session, by), decision, via="cli")
        status = application.status
    click.echo(f"{application.receipt_no}: {result} (status {status})")


@click.command("apply-due")
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
    from mailbot.applying import DEFAULT_BATCH, apply_due, format_report
    from mailbot.clock import utc_now

    rt = runtime(ctx)
    report = apply_due(
        rt.engine,
        rt.settings,
        utc_now(),
        apply_time=rt.settings.apply_time,
        dry_run=dry_run,
        through=as_of.date() if as_of else None,
        batch_size=batch or DEFAULT_BATCH,
        via="cli",
    )
    emit(report.as_dict(), as_json, lambda _: format_report(report))
    ctx.exit(1 if report.failed else 0)


@click.command()
@click.argument("receipt_no")
@click.option("--by", required=True, help="The cancelling staff member's address.")
@click.option("--reason", required=True, help="Told to the applicant.")
@click.pass_context
def cancel(ctx: click.Context, receipt_no: str, by: str, reason: str) -> None:
    """Cancel an approved application before its start date (staff only)."""
    from mailbot.clock import utc_now
    from mailbot.review import cancel_application

    rt = runtime(ctx)
    with rt.session() as session:
        application = cancel_application(
            session,
            rt.settings,
            receipt_no,
            by=by,
            reason=reason,
            now=utc_now(),
            apply_time=rt.settings.apply_time,
        )
        click.echo(
            f"{application.receipt_no}: cancelled (its start date was {application.start_date})"
        )


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
