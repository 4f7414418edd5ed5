"""The page behind the link in every notice (申込内容参照), its two PDFs, and ``/healthz``.

``GET /a/{receipt_no}?t=TOKEN`` shows one application when TOKEN is a link token signed for
exactly that receipt number and not expired (:func:`mailbot.tokens.link_refusal`), by any key of
the keyring that still verifies (:mod:`mailbot.keys`). The token is checked before the
application is looked up, and every failure (no token, bad signature, expired, another
receipt's token, no such application, an unknown path) gets the same refusal page with the same
status, so the page reveals neither whether a receipt exists nor why a link failed; the log
says why (WARNING, without the token).

The app runs inside ``mailbot serve``'s asyncio loop (uvicorn, see :class:`WebServer`); page
handlers are plain functions, which Starlette runs on its thread pool, so blocking database
reads never stall the SMTP gateway, the worker or the outbox. "Now" comes from an injected
clock, as everywhere else in mailbot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import session_scope
from db.models import UNDER_REVIEW, WITHDRAWN
from mailbot.clock import Clock, utc_now
from mailbot.config import HostPort, Settings
from mailbot.console import routes as console_routes
from mailbot.documents import (
    DocumentContext,
    DocumentUnavailable,
    FontMissingError,
    application_form_pdf,
    approval_notice_pdf,
    approval_notice_refusal,
    document_context,
)
from mailbot.errors import ConfigError, NotFoundError
from mailbot.keys import Keyring
from mailbot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mailbot.metrics import make_registry
from mailbot.metrics import render as render_metrics
from mailbot.monitor import Monitor
from mailbot.normalize import ident_of, user_code_of
from mailbot.notify import network_ja
from mailbot.office_page import office_page
from mailbot.tokens import TokenRefusal, checked_link, link_refusal
from mailbot.web_base import (
    REVIEWED,
    STATUS_EN,
    WebContext,
    content_security_policy,
    download,
    html,
    refusal,
    web_context,
)
from mailbot.web_health import check_health

log = logging.getLogger("mailbot.web")

# Token pages must not be cached (a shared computer's history), must not send the token on in
# a Referer, and load nothing from anywhere: the only thing allowed is the inline <style>.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": content_security_policy("'none'"),
}
SHUTDOWN_GRACE_SECONDS = 5


@dataclass(frozen=True)
class Opened:
    """A request whose token opened its application."""

    context: DocumentContext
    token: str
    now: datetime


def make_app(
    engine: Engine, settings: Settings, *, clock: Clock = utc_now, monitor: Monitor | None = None
) -> Starlette:
    """The ASGI app: status page, documents, health check and metrics. ``monitor`` holds the
    parts of the process it runs in (none: only the database is checked)."""
    app = Starlette(
        routes=[
            *console_routes(),  # the staff console, /staff (docs/console.md)
            Route("/o/{office_code}", office_page),
            Route("/a/{receipt_no}", application_page),
            Route("/a/{receipt_no}/approval-notice.pdf", approval_notice),
            Route("/a/{receipt_no}/application-form.pdf", application_form),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _http_error},
    )
    monitor = monitor if monitor is not None else Monitor()
    registry = make_registry(engine, monitor, clock)
    app.state.web = WebContext(engine, settings, clock, monitor, registry)
    return app


# --- pages ---------------------------------------------------------------------------------------


def application_page(request: Request) -> Response:
    opened = _open(request)
    if opened is None:
        return refusal()
    return html("application.html.j2", **_page_view(opened))


def approval_notice(request: Request) -> Response:
    opened = _open(request)
    if opened is None:
        return refusal()
    unavailable = approval_notice_refusal(opened.context, opened.now)
    if unavailable is not None:
        return _unavailable(opened, unavailable)
    try:
        data = approval_notice_pdf(opened.context, opened.now)
    except FontMissingError as exc:
        return _document_failure(exc)
    receipt_no = opened.context.receipt_no
    return _pdf(data, f"approval-notice-{receipt_no}.pdf", f"承認通知_{receipt_no}.pdf")


def application_form(request: Request) -> Response:
    opened = _open(request)
    if opened is None:
        return refusal()
    try:
        data = application_form_pdf(opened.context)
    except FontMissingError as exc:
        return _document_failure(exc)
    receipt_no = opened.context.receipt_no
    return _pdf(data, f"application-form-{receipt_no}.pdf", f"申込書_{receipt_no}.pdf")


async def healthz(request: Request) -> Response:
    web = web_context(request)
    health = await check_health(web.engine, web.settings, web.monitor, web.clock())
    return JSONResponse(
        health.body,
        status_code=HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE,
    )


def metrics(request: Request) -> Response:
    # A plain function: Starlette runs it on its thread pool, so the database reads of the
    # scrape never block the event loop.
    return Response(render_metrics(web_context(request).metrics), media_type=METRICS_CONTENT_TYPE)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and methods look exactly like a refused link.
    status = exc.status_code if isinstance(exc, HTTPException) else HTTPStatus.NOT_FOUND
    return refusal(status)


# --- opening an application ----------------------------------------------------------------------


def _open(request: Request) -> Opened | None:
    """The application when the token opens it, else None (whatever the reason)."""
    web = web_context(request)
    receipt_no = str(request.path_params["receipt_no"])
    token = request.query_params.get("t", "")
    now = web.clock()

    def refusal_with(keys: Keyring) -> TokenRefusal | None:
        return link_refusal(keys, token, receipt_no=receipt_no, now=now)

    try:
        with session_scope(web.engine) as session:
            # The token is checked first, so the answer cannot depend on whether the receipt
            # number exists.
            refused = checked_link(session, web.settings, refusal_with)
            if refused is not None:
                _log_refusal(refused, receipt_no)
                return None
            context = document_context(session, receipt_no, web.settings)
    except NotFoundError:  # signed by us but gone (a restored backup, say): still refuse
        _log_refusal(TokenRefusal.UNKNOWN, receipt_no)
        return None
    return Opened(context, token, now)


def _log_refusal(refusal: TokenRefusal, receipt_no: str) -> None:
    # Never the token (it opens the page until it expires); the receipt number is whatever the
    # client put in the path, hence %r.
    log.warning("status link refused: %s (receipt %r)", refusal, receipt_no[:32])


def _page_view(opened: Opened) -> dict[str, Any]:
    """What application.html.j2 shows, beyond the context itself."""
    context = opened.context
    unavailable = approval_notice_refusal(context, opened.now)
    return {
        "c": context,
        "steps": _steps(context.status),
        "reviewed": context.status in REVIEWED,
        "status_en": STATUS_EN.get(context.status, context.status),
        "ids": [
            {"user_id": u, "code": user_code_of(u), "ident": ident_of(u), "network": network_ja(u)}
            for u in context.user_ids
        ],
        "approval_href": None if unavailable else _document_href(opened, "approval-notice.pdf"),
        "approval_message_ja": unavailable.message_ja if unavailable else "",
        "approval_from": unavailable.available_from if unavailable else None,
        "form_href": _document_href(opened, "application-form.pdf"),
    }


def _steps(status: str) -> list[tuple[str, str]]:
    """The guide's flow 受付 → 内容確認中 → 審査終了, each done, current or still to come."""
    if status == WITHDRAWN:
        return [("受付", "done"), ("取下げ", "current")]
    current = 1 if status == UNDER_REVIEW else 2
    labels = ("受付", "内容確認中", "審査終了")
    return [
        (label, "done" if i < current else "current" if i == current else "todo")
        for i, label in enumerate(labels)
    ]


def _document_href(opened: Opened, name: str) -> str:
    # Relative to /a/{receipt_no}, so the links work behind a proxy that adds a path prefix.
    return f"{quote(opened.context.receipt_no)}/{name}?t={quote(opened.token, safe='')}"


def _unavailable(opened: Opened, unavailable: DocumentUnavailable) -> Response:
    back = f"../{quote(opened.context.receipt_no)}?t={quote(opened.token, safe='')}"
    available_from = unavailable.available_from
    return html(
        "message.html.j2",
        status=HTTPStatus.FORBIDDEN,
        title="承認通知はまだ出力できません" if available_from else "承認通知はありません",
        message_ja=unavailable.message_ja,
        message_en=(
            f"The approval notice can be produced from {available_from.isoformat()} on."
            if available_from
            else "Only an approved application has an approval notice."
        ),
        back=back,
    )


def _document_failure(exc: FontMissingError) -> Response:
    """A missing font is the operator's problem: log it, tell the applicant to try later."""
    log.error("cannot produce a document: %s", exc)
    return html(
        "message.html.j2",
        status=HTTPStatus.SERVICE_UNAVAILABLE,
        title="ただいま帳票を出力できません",
        message_ja="ただいま帳票を出力できません。しばらくしてから再度お試しください。",
        message_en="The document cannot be produced at the moment; please try again later.",
        back=None,
    )


# --- responses -----------------------------------------------------------------------------------


def _pdf(data: bytes, ascii_name: str, japanese_name: str) -> Response:
    return download(data, "application/pdf", ascii_name, japanese_name)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response, error pages included (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    # The console's pages set their own CSP: the same, but their forms post
                    # to the console (form-action 'self'; mailbot.console.http).
                    if name == "Content-Security-Policy" and name in headers:
                        continue
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_secured)


# --- serving inside mailbot's loop ---------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``mailbot serve`` owns SIGINT/SIGTERM and stops
    every service in order; uvicorn's handlers would replace the loop's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The web app on ``address``, as a task of the running loop. ``start`` binds the socket
    itself, so a busy port is a clear ConfigError (uvicorn would call sys.exit)."""

    def __init__(self, app: ASGIApp, address: HostPort) -> None:
        self.app = app
        self.address = address
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._socket is not None, "not started"
        return int(self._socket.getsockname()[1])

    async def start(self) -> None:
        self._socket = _bind(self.address)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep mailbot's logging setup
            access_log=False,  # an access log would record every link's token
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="web")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what went wrong
                raise ConfigError(f"MAILBOT_WEB_LISTEN {self.address}: the web server stopped")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task


def _bind(address: HostPort) -> socket.socket:
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError as exc:
        raise ConfigError(f"MAILBOT_WEB_LISTEN {address}: cannot listen: {exc.strerror}") from None
    return sock


async def start_web(
    engine: Engine, settings: Settings, *, clock: Clock = utc_now, monitor: Monitor | None = None
) -> WebServer:
    """Start the status pages on MAILBOT_WEB_LISTEN; ``await server.stop()`` to end."""
    app = make_app(engine, settings, clock=clock, monitor=monitor)
    server = WebServer(app, settings.web_address)
    await server.start()
    log.info("status pages on http://%s (links use %s)", settings.web_address, settings.base_url)
    return server
