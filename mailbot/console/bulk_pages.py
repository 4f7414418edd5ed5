"""The bulk pages: ``POST /staff/bulk/preview`` shows what would be done to each chosen item,
``POST /staff/bulk/run`` does it and shows each item's result (mailbot.console.bulk)."""

from __future__ import annotations

from http import HTTPStatus

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from db.engine import session_scope
from mailbot.console import bulk
from mailbot.console.http import (
    Form,
    in_thread,
    read_form,
    render,
    staff_action,
    who_posted,
)
from mailbot.console.pages import CALENDAR
from mailbot.console.sessions import StaffSession
from mailbot.web_base import web_context


def _chosen(form: Form) -> tuple[str, list[bulk.Item]] | None:
    """The form's bulk action and its items; None when either is missing (or unknown)."""
    action = form.get("action")
    items = bulk.items_from(form.getlist("item"))
    if action not in bulk.BULK_ACTIONS or not items:
        return None
    return action, items


@staff_action
def preview(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    chosen = _chosen(form)
    if chosen is None:
        return render(request, "bulk_nothing.html.j2", who=who, status=HTTPStatus.BAD_REQUEST)
    action, items = chosen
    return render(
        request,
        "bulk_preview.html.j2",
        who=who,
        current="",
        action=action,
        title=bulk.BULK_ACTIONS[action],
        rows=bulk.preview(session, action, items),
        reason=form.get("reason").strip(),
    )


async def run(request: Request) -> Response:
    return await in_thread(_run, request, await read_form(request))


def _run(request: Request, form: Form) -> Response:
    """Not one transaction: the session and token are checked in one, then each item has its
    own (mailbot.console.bulk.run)."""
    context = web_context(request)
    with session_scope(context.engine) as session:
        who = who_posted(request, session, form)
    if isinstance(who, Response):
        return who
    chosen = _chosen(form)
    if chosen is None:
        return render(request, "bulk_nothing.html.j2", who=who, status=HTTPStatus.BAD_REQUEST)
    action, items = chosen
    results = bulk.run(
        context.engine,
        context.settings,
        CALENDAR,
        context.clock,
        action=action,
        items=items,
        by=who.email,
        reason=form.get("reason").strip(),
    )
    return render(
        request,
        "bulk_results.html.j2",
        who=who,
        current="",
        action=action,
        title=bulk.BULK_ACTIONS[action],
        results=results,
        succeeded=sum(r.ok for r in results),
    )
