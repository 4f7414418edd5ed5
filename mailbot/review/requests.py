"""Review requests: each active staff member gets their own mail about a new application.

The mail shows the request, what the registry says beside it (the codes' other IDs, who shares
them, the registration dates near the proposed one) and how to answer: replying to it with
承認 / 却下 (mailbot.review.commands) to the member's own single-use reply address.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from db.models import Application, Staff
from mailbot import notices
from mailbot.addresses import tagged_address
from mailbot.config import Settings
from mailbot.keys import keyring
from mailbot.normalize import user_code_of
from mailbot.notify import application_context, queue_staff_mail, status_url
from mailbot.rules import RegistryView
from mailbot.schedule_table import registration_dates
from mailbot.staff import active_staff
from mailbot.tokens import Purpose, issue_reply_token

# apply+t<token>@domain: a staff member's answer to a review request, or to the notice that
# their approval took effect (a CANCEL token); the token's signed purpose tells them apart.
REVIEW_TAG = "t"
# Registration dates shown on either side of the proposed start date.
NEARBY_DATES = 3


def send_review_requests(
    session: Session,
    settings: Settings,
    application: Application,
    *,
    view: RegistryView,
    now: datetime,
    skip: Staff | None = None,
) -> int:
    """Each active staff member gets their own review mail, with their own reply token."""
    assert application.id is not None
    reviewers = [m for m in active_staff(session) if skip is None or m.id != skip.id]
    if not reviewers:  # nobody to ask (yet): the reminder digest lists it once staff exist
        return 0
    about = application_context(session, application)
    context = {
        **about,
        **_registry_context(session, application, view, about["user_ids"]),
        "status_url": status_url(session, settings, application.receipt_no, now),
        "approvals_required": settings.approvals_required,
    }
    sent = 0
    for member in reviewers:
        token = issue_reply_token(
            session,
            keyring(session, settings),
            purpose=Purpose.REVIEW,
            application_id=application.id,
            version=application.version,
            staff_id=member.id,
            now=now,
            lifetime=timedelta(days=settings.review_token_days),
        )
        sent += queue_staff_mail(
            session,
            settings,
            member,
            notices.REVIEW_REQUEST,
            context,
            cause=notices.application_cause(application.receipt_no),
            version=application.version,
            application_id=application.id,
            reply_to=tagged_address(settings, REVIEW_TAG + token),
            now=now,
        )
    return sent


def _registry_context(
    session: Session, application: Application, view: RegistryView, own: list[str]
) -> dict[str, Any]:
    """What a reviewer needs beside the request (``own``: its user IDs): the codes' other IDs,
    sharing, the schedule."""
    codes = sorted({user_code_of(user_id) for user_id in own})
    code_rows = {
        code: sorted(
            (
                {
                    "user_id": info.user_id,
                    "office_code": info.office_code,
                    "status": info.status,
                    "in_this_application": info.user_id in own,
                    "open_receipt_no": info.open_receipt_no,
                }
                for info in view.ids_of_code(code)
            ),
            key=lambda row: str(row["user_id"]),
        )
        for code in codes
    }
    dates = registration_dates(session)
    proposed = application.proposed_start_date
    before = [d for d in dates if d < proposed][-NEARBY_DATES:]
    after = [d for d in dates if d >= proposed][:NEARBY_DATES]
    office = view.offices.get(application.office_code)
    return {
        "code_rows": code_rows,
        "shared_codes": [
            c for c, rows in code_rows.items() if len({r["office_code"] for r in rows}) > 1
        ],
        "nearby_dates": [*before, *after],
        "contacts": sorted(office.contact_emails) if office else [],
    }
