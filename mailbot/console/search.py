"""Search: applications by receipt number, user ID or code, office code, address or name, with
status and received-date filters. Every criterion is in the URL (bookmark it, send it to a
colleague), and the CSV export runs the very same query with the same limit, so the file holds
exactly the rows the page shows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from db.models import APPLICATION_STATUSES, Application, ApplicationItem
from mailbot.applications import STATUS_JA
from mailbot.clock import as_utc
from mailbot.console.queues import user_ids_of
from mailbot.normalize import nfkc
from mailbot.receipts import parse_receipt_no

STATUSES = APPLICATION_STATUSES  # the search form offers them in this order
SHOWN = 200  # rows a search shows (and exports); the page says when there are more
CSV_COLUMNS = (
    "receipt_no",
    "status",
    "status_ja",
    "office_code",
    "user_ids",
    "received_on",
    "proposed_start_date",
    "start_date",
    "applicant_name",
    "applicant_email",
    "manager_name",
    "manager_email",
    "decided_by",
    "decided_at",
)
# A cell a spreadsheet would run as a formula is written with a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Criteria:
    q: str = ""
    status: str = ""
    received_from: date | None = None
    received_to: date | None = None

    @property
    def empty(self) -> bool:
        return not (self.q or self.status or self.received_from or self.received_to)

    def as_params(self) -> dict[str, str]:
        return {
            "q": self.q,
            "status": self.status,
            "from": self.received_from.isoformat() if self.received_from else "",
            "to": self.received_to.isoformat() if self.received_to else "",
        }


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def criteria_from(params: Any) -> Criteria:
    """From the query string; an unknown status or a bad date is left out, never an error."""
    status = str(params.get("status", ""))
    return Criteria(
        q=nfkc(str(params.get("q", ""))).strip()[:100],
        status=status if status in STATUSES else "",
        received_from=_day(str(params.get("from", ""))),
        received_to=_day(str(params.get("to", ""))),
    )


@dataclass(frozen=True)
class Found:
    rows: list[tuple[Application, tuple[str, ...]]]
    total: int

    @property
    def more(self) -> bool:
        return self.total > len(self.rows)


def search(session: Session, criteria: Criteria, limit: int = SHOWN) -> Found:
    a = Application
    query = select(a)
    if criteria.q:
        q = criteria.q
        key = q.upper().replace("-", "").replace(" ", "")
        needle = f"%{q.lower()}%"
        # A user code (5 characters) finds the applications naming any of its IDs.
        item_key = col(ApplicationItem.key)
        named = item_key.startswith(key) if len(key) == 5 and key.isalnum() else item_key == key
        items = select(ApplicationItem.application_id).where(named)
        matches = [
            col(a.office_code) == key,
            col(a.id).in_(items),
            func.lower(col(a.applicant_email)).like(needle),
            func.lower(col(a.manager_email)).like(needle),
            func.lower(col(a.sender)).like(needle),
            col(a.applicant_name).like(f"%{q}%"),
            col(a.manager_name).like(f"%{q}%"),
        ]
        receipt = parse_receipt_no(q)
        if receipt:
            matches.append(col(a.receipt_no) == receipt)
        query = query.where(or_(*matches))
    if criteria.status:
        query = query.where(col(a.status) == criteria.status)
    if criteria.received_from:
        query = query.where(col(a.received_on) >= criteria.received_from)
    if criteria.received_to:
        query = query.where(col(a.received_on) <= criteria.received_to)
    total = int(session.exec(select(func.count()).select_from(query.subquery())).one())
    applications = list(
        session.exec(query.order_by(col(a.received_at).desc(), col(a.id).desc()).limit(limit))
    )
    user_ids = user_ids_of(session, [x.id for x in applications if x.id is not None])
    return Found([(x, user_ids.get(x.id or 0, ())) for x in applications], total)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _when(moment: datetime | None, zone: Any) -> str:
    if moment is None:
        return ""
    return as_utc(moment).astimezone(zone).isoformat(timespec="minutes")


def as_csv(found: Found, zone: Any) -> bytes:
    """UTF-8 with a byte-order mark (Excel on Japanese Windows reads it as UTF-8), CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for application, user_ids in found.rows:
        writer.writerow(
            _cell(value)
            for value in (
                application.receipt_no,
                application.status,
                STATUS_JA.get(application.status, application.status),
                application.office_code,
                " ".join(user_ids),
                application.received_on.isoformat(),
                application.proposed_start_date.isoformat(),
                application.start_date.isoformat() if application.start_date else "",
                application.applicant_name,
                application.applicant_email,
                application.manager_name,
                application.manager_email,
                application.decided_by or "",
                _when(application.decided_at, zone),
            )
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")
