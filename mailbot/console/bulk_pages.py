"""The bulk pages: ``POST /staff/bulk/preview`` shows what would be done to each chosen item,
``POST /staff/bulk/run`` does it and shows each item's result (mailbot.console.bulk)."""

from __future__ import annotations

from http import HTTPStatus

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from db.engine import session_scope
from mailbot.console import bulk
from mailbot.console.auth import audit
from mailbot.console.http import (
    Form,
    client,
    in_thread,
    read_form,
    render,
    staff_action,
    web,
)
from mailbot.console.pages import CALENDAR
from mailbot.console.sessions import COOKIE, StaffSession, load_session, session_token_ok


def _action(form: Form) -> str:
    action = form.get("action")
    return action if action in bulk.BULK_ACTIONS else ""


@staff_action
def preview(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    action = _action(form)
    items = bulk.items_from(form.getlist("item"))
    if not action or not items:
        return render(request, "bulk_nothing.html.j2", who=who, status=HTTPStatus.BAD_REQUEST)
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
    context = web(request)
    with session_scope(context.engine) as session:
        now = context.clock()
        who = load_session(session, context.settings, request.cookies.get(COOKIE), now)
        if who is None:
            return render(request, "ended.html.j2", status=HTTPStatus.FORBIDDEN)
        if not session_token_ok(who, form.get("csrf")):
            audit(
                session,
                "console_csrf_refused",
                who.email,
                now,
                path=request.url.path[:200],
                client=client(request),
            )
            return render(request, "csrf.html.j2", who=who, status=HTTPStatus.FORBIDDEN)
    action = _action(form)
    items = bulk.items_from(form.getlist("item"))
    if not action or not items:
        return render(request, "bulk_nothing.html.j2", who=who, status=HTTPStatus.BAD_REQUEST)
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
