"""``mailbot schedule``: the system registration dates, and the scheduler's pending applies."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import click

from mailbot.cli.common import emit, json_option, runtime


@click.group()
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
    from mailbot.clock import utc_now
    from scheduler.listing import format_jobs, jobs_as_dict, list_scheduled

    rt = runtime(ctx)
    with rt.session() as session:
        rows, stale = list_scheduled(session, rt.settings.zone, rt.settings.apply_time, utc_now())
    emit(jobs_as_dict(rows, stale), as_json, lambda _: format_jobs(rows, stale))
