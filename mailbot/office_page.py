"""The office's page behind the link in the contract reply: the guide's top menu for one office.

``GET /o/{office_code}?t=TOKEN`` shows, when TOKEN is an office link signed for exactly that
office and not expired (:mod:`mailbot.office_link`):

* 新着情報: for each application whose review has finished, the portal's line
  「【RECEIPT】利用申込の審査が終了しました。通知内容を確認してください。」 with a link to
  its 申込内容参照 page (the guide's "新着情報「詳細」 → 「ID通知内容」");
* the contract as in the mail (:class:`mailbot.contract.OfficeContract`);
* the next registration dates, the earliest a request sent today can get marked;
* the office's applications, newest first, with status and a link to each one's page.

The token is checked before anything about the office is read, and every failure (no token,
bad signature, expired, another office's token, an office that is gone, an unknown path) gets
the application page's refusal (:func:`mailbot.web_base.refusal`): same page, same status, the same
security headers (the app's middleware). The log says why, without the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import quote

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from db.engine import session_scope
from mailbot.applications import STATUS_JA
from mailbot.calendar import BusinessCalendar
from mailbot.contract import OfficeContract, load_contracts
from mailbot.keys import Keyring, keyring
from mailbot.office_link import office_link_refusal
from mailbot.registry_queries import OfficeApplicationRow, office_applications
from mailbot.tokens import TokenRefusal, checked_link, link_token
from mailbot.upcoming import Upcoming, load_upcoming
from mailbot.web_base import REVIEWED, STATUS_EN, WebContext, html, refusal, web_context

log = logging.getLogger("mailbot.web")

APPLICATIONS_SHOWN = 50  # newest first; the page says how many more there are


def news_line(receipt_no: str) -> str:
    """The portal's news line for a finished review (docs/domain.md#texts-kept-from-the-guide)."""
    return f"【{receipt_no}】利用申込の審査が終了しました。通知内容を確認してください。"


@dataclass(frozen=True)
class ApplicationEntry:
    row: OfficeApplicationRow
    status_ja: str
    status_en: str
    news: str | None  # the news line, once the review has finished
    href: str  # the application's page, relative to this one


@dataclass(frozen=True)
class OfficeView:
    contract: OfficeContract
    schedule: Upcoming
    applications: tuple[ApplicationEntry, ...]
    total: int
    today: date


def office_page(request: Request) -> Response:
    web = web_context(request)
    office_code = str(request.path_params["office_code"])
    token = request.query_params.get("t", "")
    now = web.clock()

    def refusal_with(keys: Keyring) -> TokenRefusal | None:
        return office_link_refusal(keys, token, office_code=office_code, now=now)

    with session_scope(web.engine) as session:
        # As for the application page: the token first, so the answer cannot depend on
        # whether the office exists.
        refused = checked_link(session, web.settings, refusal_with)
        if refused is not None:
            _log_refusal(refused, office_code)
            return refusal()
        view = _load(session, web, office_code, now)
    if view is None:  # signed by us but gone from the registry: still the same refusal
        _log_refusal(TokenRefusal.UNKNOWN, office_code)
        return refusal()
    return html("office.html.j2", v=view, c=view.contract)


def _load(session: Session, web: WebContext, office_code: str, now: datetime) -> OfficeView | None:
    contracts = load_contracts(session, [office_code])
    if not contracts:
        return None
    settings = web.settings
    today = now.astimezone(settings.zone).date()
    rows, total = office_applications(session, office_code, APPLICATIONS_SHOWN)
    # Each application's page gets a link of its own, as a notice would carry.
    signing = keyring(session, settings)
    expires = now + timedelta(days=settings.link_token_days)
    entries = tuple(
        ApplicationEntry(
            row=row,
            status_ja=STATUS_JA.get(row.status, row.status),
            status_en=STATUS_EN.get(row.status, row.status),
            news=news_line(row.receipt_no) if row.status in REVIEWED else None,
            # Relative, so the link works behind a proxy that adds a path prefix.
            href=(
                f"../a/{quote(row.receipt_no)}"
                f"?t={quote(link_token(signing, row.receipt_no, expires), safe='')}"
            ),
        )
        for row in rows
    )
    schedule = load_upcoming(session, BusinessCalendar(), today, settings.lead_business_days)
    return OfficeView(contracts[0], schedule, entries, total, today)


def _log_refusal(refused: TokenRefusal, office_code: str) -> None:
    # Never the token; the office code is whatever the client put in the path, hence %r.
    log.warning("office link refused: %s (office %r)", refused, office_code[:32])
