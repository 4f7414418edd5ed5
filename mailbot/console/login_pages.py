"""The login pages: ask for a link, type a code, confirm a link; and logout.

``GET /staff/login`` asks for an address (and takes a code); ``POST /staff/login`` answers the
same page to everyone ("if this is a staff address, a mail is on its way"); ``POST
/staff/login/code`` logs in with the code; ``GET /staff/login/{link}`` only shows the
confirmation page, and its form's ``POST`` logs in. Before login the forms' CSRF token is bound
to a pre-session cookie (mailbot.console.sessions). A login always makes a new session.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from http import HTTPStatus
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from db.engine import session_scope
from db.models import Staff
from mailbot.console.auth import (
    LoginRefusal,
    ask_for_link,
    check_link,
    redeem_code,
    redeem_link,
    refuse_link,
)
from mailbot.console.http import (
    Form,
    delete_cookie,
    in_thread,
    logged_in,
    read_form,
    redirect,
    render,
    root,
    set_cookie,
)
from mailbot.console.http import client as client_of
from mailbot.console.sessions import (
    COOKIE,
    PRE_COOKIE,
    end_session,
    load_session,
    pre_session_token,
    pre_session_token_ok,
    pre_session_value,
    session_token_ok,
    start_session,
)
from mailbot.web_base import web_context

# What a refused code is told: nothing about whether the address is staff's.
CODE_REFUSED = "wrong"
CODE_RATE_LIMITED = "limited"


def _pre(request: Request) -> tuple[str, bool]:
    """The browser's pre-session value, and whether it is new (to be set as a cookie)."""
    value = request.cookies.get(PRE_COOKIE, "")
    if value and len(value) <= 64:
        return value, False
    return pre_session_value(), True


def _pre_page(
    request: Request,
    session: Session,
    template: str,
    *,
    status: int = HTTPStatus.OK,
    **context: Any,
) -> Response:
    """A page with pre-login forms: their CSRF token, and the cookie it is bound to."""
    settings = web_context(request).settings
    pre, new = _pre(request)
    response = render(
        request,
        template,
        status=status,
        csrf=pre_session_token(session, settings, pre),
        **context,
    )
    if new:
        set_cookie(response, settings, PRE_COOKIE, pre)
    return response


def _login_page(
    request: Request,
    session: Session,
    *,
    status: int = HTTPStatus.OK,
    address: str = "",
    sent: bool = False,
    problem: str = "",
    bye: bool = False,
) -> Response:
    return _pre_page(
        request,
        session,
        "login.html.j2",
        status=status,
        address=address,
        sent=sent,
        problem=problem,
        bye=bye,
    )


def login_page(request: Request) -> Response:
    context = web_context(request)
    with session_scope(context.engine) as session:
        if logged_in(request, session) is not None:
            return redirect(root(context.settings) + "/")
        return _login_page(request, session, bye=bool(request.query_params.get("bye")))


PreLoginAction = Callable[[Request, Session, Form, datetime], Response]


def pre_login_action(action: PreLoginAction) -> Callable[[Request], Any]:
    """A POST of a pre-login form: done only with the CSRF token bound to the browser's
    pre-session cookie; without it, :func:`_stale`."""

    @wraps(action)
    async def handler(request: Request) -> Response:
        return await in_thread(_run, request, await read_form(request))

    def _run(request: Request, form: Form) -> Response:
        context = web_context(request)
        with session_scope(context.engine) as session:
            now = context.clock()
            if not pre_session_token_ok(
                session, context.settings, request.cookies.get(PRE_COOKIE), form.get("csrf"), now
            ):
                return _stale(request, session)
            return action(request, session, form, now)

    return handler


@pre_login_action
def ask(request: Request, session: Session, form: Form, now: datetime) -> Response:
    address = form.get("email").strip()[:320]
    if not address:
        return _login_page(request, session, status=HTTPStatus.BAD_REQUEST, problem="no_address")
    settings = web_context(request).settings
    ask_for_link(session, settings, address, now=now, client=client_of(request))
    # The same page whoever asked, rate-limited or not: it tells nobody who is staff.
    return _login_page(request, session, address=address, sent=True)


@pre_login_action
def code_login(request: Request, session: Session, form: Form, now: datetime) -> Response:
    address = form.get("email").strip()[:320]
    settings = web_context(request).settings
    result = redeem_code(
        session, settings, address, form.get("code"), now, client=client_of(request)
    )
    if isinstance(result, Staff):
        return _logged_in(request, session, result)
    problem = CODE_RATE_LIMITED if result is LoginRefusal.RATE_LIMITED else CODE_REFUSED
    return _login_page(
        request,
        session,
        status=HTTPStatus.UNAUTHORIZED,
        address=address,
        sent=True,
        problem=problem,
    )


def confirm_page(request: Request) -> Response:
    """The link's GET: shows the confirmation form; logs nobody in and spends nothing."""
    context = web_context(request)
    text = str(request.path_params["link"])
    with session_scope(context.engine) as session:
        now = context.clock()
        check = check_link(session, context.settings, text, now)
        if check.refusal is not None:
            refuse_link(session, check, now, client=client_of(request), step="open")
            return render(request, "link_refused.html.j2", status=HTTPStatus.NOT_FOUND)
        assert check.staff is not None
        return _pre_page(request, session, "confirm.html.j2", email=check.staff.email)


@pre_login_action
def confirm(request: Request, session: Session, form: Form, now: datetime) -> Response:
    text = str(request.path_params["link"])
    settings = web_context(request).settings
    result = redeem_link(session, settings, text, now, client=client_of(request))
    if isinstance(result, Staff):
        return _logged_in(request, session, result)
    return render(request, "link_refused.html.j2", status=HTTPStatus.NOT_FOUND)


def _logged_in(request: Request, session: Session, staff: Staff) -> Response:
    context = web_context(request)
    value = start_session(
        session,
        context.settings,
        staff,
        context.clock(),
        presented=request.cookies.get(COOKIE),
        client=client_of(request),
    )
    response = redirect(root(context.settings) + "/")
    set_cookie(response, context.settings, COOKIE, value)
    delete_cookie(response, context.settings, PRE_COOKIE)
    return response


def _stale(request: Request, session: Session) -> Response:
    """A pre-login form without its token (another site's, or a page from before a restart):
    nothing is done; the login page is shown again with a fresh token."""
    return _login_page(request, session, status=HTTPStatus.FORBIDDEN, problem="stale")


async def logout(request: Request) -> Response:
    return await in_thread(_logout, request, await read_form(request))


def _logout(request: Request, form: Form) -> Response:
    context = web_context(request)
    value = request.cookies.get(COOKIE)
    with session_scope(context.engine) as session:
        who = load_session(session, context.settings, value, context.clock())
        if who is not None and value and session_token_ok(who, form.get("csrf")):
            end_session(session, value, context.clock())
        elif who is not None:
            return render(request, "csrf.html.j2", who=who, status=HTTPStatus.FORBIDDEN)
    response = redirect(root(context.settings) + "/login?bye=1")
    delete_cookie(response, context.settings, COOKIE)
    return response
