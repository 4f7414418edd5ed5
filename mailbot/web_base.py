"""What every page mailbot serves shares: the app's context, the statuses in English, the
templates of ``templates/web/`` and the one refusal page.

Here, not in mailbot.web, so that the pages (the application page in mailbot.web, the office
page, the staff console) import it and mailbot.web imports them to assemble the app, with no
import going back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from db.models import APPLIED, APPROVED, CANCELLED, REJECTED, UNDER_REVIEW, WITHDRAWN
from mailbot.clock import Clock
from mailbot.config import Settings
from mailbot.dates import ja_date
from mailbot.monitor import Monitor

# The review is over (審査終了) in these statuses: the portal's news line appears.
REVIEWED = (APPROVED, REJECTED, APPLIED, CANCELLED)
STATUS_EN = {
    UNDER_REVIEW: "under review",
    APPROVED: "review finished (approved)",
    REJECTED: "review finished (rejected)",
    WITHDRAWN: "withdrawn",
    CANCELLED: "cancelled",
    APPLIED: "applied",
}


def content_security_policy(form_action: str) -> str:
    """Nothing loaded from anywhere but the inline <style>, no framing; forms post only to
    ``form_action`` (the status pages have none, the console's post to itself)."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        f"form-action {form_action}; frame-ancestors 'none'"
    )


@dataclass(frozen=True)
class WebContext:
    """What a page reads from ``request.app.state.web``."""

    engine: Engine
    settings: Settings
    clock: Clock
    monitor: Monitor
    metrics: CollectorRegistry


def web_context(request: Request) -> WebContext:
    context = request.app.state.web
    assert isinstance(context, WebContext)
    return context


def page_environment() -> Environment:
    """A new environment for ``templates/web/``; the console adds its own filters to one."""
    env = Environment(
        loader=PackageLoader("mailbot", "templates/web"),
        autoescape=True,  # applicants' and senders' own text is shown: escape all of it
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ja_date"] = ja_date
    return env


@cache
def templates() -> Environment:
    return page_environment()


def download(data: bytes, media_type: str, ascii_name: str, name: str) -> Response:
    """``data`` as an attachment named ``name`` (RFC 6266), ``ascii_name`` for old clients."""
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    return Response(data, media_type=media_type, headers={"Content-Disposition": disposition})


def html(template: str, *, status: int = HTTPStatus.OK, **context: Any) -> HTMLResponse:
    body = templates().get_template(template).render(**context)
    return HTMLResponse(body, status_code=status)


def refusal(status: int = HTTPStatus.NOT_FOUND) -> Response:
    """The one page every failed link gets: it says nothing about why."""
    return html("refusal.html.j2", status=status)
