"""What every console page shares: the request's context, forms, cookies, rendering, guards.

Pages are plain HTML forms that post (no JavaScript anywhere), so the console works behind
strict proxies and from the keyboard. Every response carries the status page's security
headers (:class:`mailbot.web.SecurityHeaders`), with one difference: the console's CSP lets
forms post to the console itself (``form-action 'self'``); the rest is the same, inline style
only. Forms are URL-encoded and parsed here (Starlette would need python-multipart).

Database work runs on Starlette's thread pool (GET handlers are plain functions; POST handlers
read the body, then call :func:`in_thread`), never on the event loop that also runs the SMTP
gateway, the worker and the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, wraps
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import Environment
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from db.engine import session_scope
from mailbot.applications import STATUS_JA
from mailbot.clock import as_utc
from mailbot.config import Settings
from mailbot.console.auth import audit
from mailbot.console.sessions import COOKIE, StaffSession, load_session, session_token_ok
from mailbot.errors import BilingualError, MailbotError
from mailbot.web_base import STATUS_EN, content_security_policy, page_environment, web_context

log = logging.getLogger("mailbot.console")

CONSOLE_CSP = content_security_policy("'self'")
MAX_FORM_BYTES = 1024 * 1024
MAX_FORM_FIELDS = 5000


@dataclass(frozen=True)
class Form:
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return next((value for key, value in self.pairs if key == name), default)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


class FormTooLarge(MailbotError):
    """A posted form over MAX_FORM_BYTES."""


async def read_form(request: Request) -> Form:
    """The URL-encoded body of a POST (anything else reads as an empty form)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge("the form is too large")
    if kind != "application/x-www-form-urlencoded":
        return Form()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return Form()
    return Form(pairs)


def client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def root(settings: Settings) -> str:
    """The console's path as browsers see it (MAILBOT_BASE_URL's path, then /staff)."""
    return urlsplit(settings.base_url).path.rstrip("/") + "/staff"


def secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def set_cookie(
    response: Response, settings: Settings, name: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=root(settings),
        secure=secure(settings),
        httponly=True,
        samesite="lax",
    )


def delete_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path=root(settings), secure=secure(settings), httponly=True, samesite="lax"
    )


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=HTTPStatus.SEE_OTHER)


def query(**params: str) -> str:
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept) if kept else ""


# --- rendering -----------------------------------------------------------------------------------


def _zoned(moment: datetime | None, zone: Any) -> str:
    if moment is None:
        return "-"
    return as_utc(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _short_date(day: date | None) -> str:
    return day.isoformat() if day else "-"


@cache
def templates() -> Environment:
    env = page_environment()
    env.filters["iso"] = _short_date
    env.globals["STATUS_JA"] = STATUS_JA
    env.globals["STATUS_EN"] = STATUS_EN
    return env


def render(
    request: Request,
    template: str,
    *,
    who: StaffSession | None = None,
    status: int = HTTPStatus.OK,
    **context: Any,
) -> HTMLResponse:
    settings = web_context(request).settings
    zone = settings.zone
    body = (
        templates()
        .get_template(f"console/{template}")
        .render(
            root=root(settings),
            who=who,
            when=lambda moment: _zoned(moment, zone),
            **context,
        )
    )
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CONSOLE_CSP})


def problem_page(
    request: Request,
    who: StaffSession | None,
    problem: BilingualError | MailbotError,
    *,
    back: str,
    status: int = HTTPStatus.CONFLICT,
) -> HTMLResponse:
    ja = problem.message_ja if isinstance(problem, BilingualError) else ""
    en = problem.message_en if isinstance(problem, BilingualError) else str(problem)
    return render(
        request, "problem.html.j2", who=who, status=status, message_ja=ja, message_en=en, back=back
    )


# --- guards --------------------------------------------------------------------------------------

Page = Callable[[Request, Session, StaffSession], Response]
Action = Callable[[Request, Session, StaffSession, Form], Response]
F = TypeVar("F")


def now_of(request: Request) -> datetime:
    return web_context(request).clock()


def logged_in(request: Request, session: Session) -> StaffSession | None:
    """The live session the request's cookie names, if any (mailbot.console.sessions)."""
    context = web_context(request)
    return load_session(session, context.settings, request.cookies.get(COOKIE), context.clock())


def staff_page(page: Page) -> Callable[[Request], Response]:
    """A GET page for a logged-in staff member; anyone else is sent to the login page."""

    @wraps(page)
    def handler(request: Request) -> Response:
        context = web_context(request)
        with session_scope(context.engine) as session:
            who = logged_in(request, session)
            if who is not None:
                return page(request, session, who)
        return redirect(root(context.settings) + "/login")

    return handler


def staff_action(action: Action) -> Callable[[Request], Any]:
    """A POST by a logged-in staff member with its session's CSRF token.

    Without a live session or with a wrong token nothing is done (a CSRF refusal is audited).
    A BilingualError or MailbotError raised by the action rolls its transaction back and is
    shown as a page naming the problem."""

    @wraps(action)
    async def handler(request: Request) -> Response:
        form = await read_form(request)
        return await in_thread(_run, request, form)

    def _run(request: Request, form: Form) -> Response:
        context = web_context(request)
        who: StaffSession | None = None
        try:
            with session_scope(context.engine) as session:
                poster = who_posted(request, session, form)
                if isinstance(poster, Response):
                    return poster
                who = poster
                return action(request, session, who, form)
        except (BilingualError, MailbotError) as problem:
            return problem_page(request, who, problem, back=_back(request, context.settings))

    return handler


def who_posted(request: Request, session: Session, form: Form) -> StaffSession | Response:
    """The staff member whose live session posted ``form`` with its CSRF token, or the page
    refusing the post (the session has ended; the token is missing or wrong, which is audited)."""
    who = logged_in(request, session)
    if who is None:
        return render(request, "ended.html.j2", status=HTTPStatus.FORBIDDEN)
    if not session_token_ok(who, form.get("csrf")):
        audit(
            session,
            "console_csrf_refused",
            who.email,
            now_of(request),
            path=request.url.path[:200],
            client=client(request),
        )
        log.warning("console: a form without its CSRF token from %s", who.email)
        return render(request, "csrf.html.j2", who=who, status=HTTPStatus.FORBIDDEN)
    return who


def _back(request: Request, settings: Settings) -> str:
    """The page an action was posted from: its application or message, else home."""
    parts = request.url.path.split("/")
    # /staff/a/RECEIPT/approve, /staff/messages/ID/discard
    if len(parts) == 5 and parts[2] in ("a", "messages"):
        return f"{root(settings)}/{parts[2]}/{parts[3]}"
    return root(settings) + "/"


async def in_thread(function: Callable[..., Response], *args: Any) -> Response:
    return await run_in_threadpool(function, *args)
