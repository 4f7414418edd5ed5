"""The console's reading pages: home (counted queues), each queue, search with its CSV, health.

Each is a URL a colleague can be sent; a search's criteria are its query string.
"""

from __future__ import annotations

from datetime import date, datetime
from http import HTTPStatus
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from db.engine import session_scope
from mailbot.calendar import BusinessCalendar
from mailbot.console import queues
from mailbot.console.health import NextApply, database_part, panel
from mailbot.console.http import logged_in, now_of, query, redirect, render, root, staff_page
from mailbot.console.search import STATUSES, as_csv, criteria_from, search
from mailbot.console.sessions import StaffSession
from mailbot.web_base import web_context
from mailbot.web_health import check_health

CALENDAR = BusinessCalendar()


def today_of(request: Request) -> tuple[datetime, date]:
    now = now_of(request)
    return now, now.astimezone(web_context(request).settings.zone).date()


@staff_page
def home(request: Request, session: Session, who: StaffSession) -> Response:
    settings = web_context(request).settings
    _, today = today_of(request)
    counts = queues.counts(session, CALENDAR, today, settings.console_risk_business_days)
    return render(
        request,
        "home.html.j2",
        who=who,
        current="home",
        counts=counts,
        titles=queues.QUEUE_TITLES,
        order=queues.QUEUES,
    )


@staff_page
def queue(request: Request, session: Session, who: StaffSession) -> Response:
    name = str(request.path_params["name"])
    if name not in queues.QUEUES:
        return render(request, "not_found.html.j2", who=who, status=HTTPStatus.NOT_FOUND)
    settings = web_context(request).settings
    _, today = today_of(request)
    context: dict[str, Any] = {"name": name, "title": queues.QUEUE_TITLES[name]}
    if name == "review":
        context["rows"] = queues.under_review(
            session, CALENDAR, today, settings.console_risk_business_days
        )
        context["risk"] = settings.console_risk_business_days
        context["approvals_required"] = settings.approvals_required
    elif name == "approved":
        context["rows"] = queues.approved(session)
    elif name == "shared":
        context["rows"] = queues.shared_waiting(session)
    elif name == "quarantine":
        context["rows"] = queues.quarantined(session)
    else:
        context["rows"] = queues.failed_notices(session)
    # A capped list (at most queues.LIMIT rows) is headed by its true total, counted apart.
    capped = name in queues.FILTERS
    context["total"] = queues.count(session, name) if capped else len(context["rows"])
    return render(request, f"queue_{name}.html.j2", who=who, current=name, **context)


@staff_page
def search_page(request: Request, session: Session, who: StaffSession) -> Response:
    criteria = criteria_from(request.query_params)
    found = None if criteria.empty else search(session, criteria)
    params = criteria.as_params()
    return render(
        request,
        "search.html.j2",
        who=who,
        current="search",
        c=criteria,
        params=params,
        found=found,
        statuses=STATUSES,
        csv_href=f"{root(web_context(request).settings)}/search.csv{query(**params)}",
    )


@staff_page
def search_csv(request: Request, session: Session, who: StaffSession) -> Response:
    criteria = criteria_from(request.query_params)
    settings = web_context(request).settings
    found = search(session, criteria)
    stamp = now_of(request).astimezone(settings.zone).strftime("%Y%m%d-%H%M")
    return Response(
        as_csv(found, settings.zone),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="mailbot-search-{stamp}.csv"'},
    )


async def health_page(request: Request) -> Response:
    context = web_context(request)

    def who_and_facts() -> tuple[StaffSession | None, datetime | None, NextApply | None]:
        with session_scope(context.engine) as session:
            who = logged_in(request, session)
            if who is None:
                return None, None, None
            last, upcoming = database_part(session, context.settings)
            return who, last, upcoming

    who, last, upcoming = await run_in_threadpool(who_and_facts)
    if who is None:
        return redirect(root(context.settings) + "/login")
    health = await check_health(context.engine, context.settings, context.monitor, context.clock())
    shown = panel(health.body, health.ok, context.monitor, last, upcoming)
    return render(request, "health.html.j2", who=who, current="health", p=shown)
