"""Demo data for ``make run``: the example registry, a schedule that is always in the future,
one staff member, and a request that passes every rule today."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlmodel import Session, select

from db.models import Office, RegistrationDate
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.registry import import_registry
from mailbot.staff import add_staff

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_REGISTRY = EXAMPLES / "registry-demo.csv"
DEMO_STAFF = "staff@mailbot.localhost"
DEMO_WEEKS = 26


def upcoming_registration_dates(today: date, calendar: BusinessCalendar) -> list[date]:
    """Every business Tuesday of the next half year: a plausible schedule table that never
    goes stale, unlike the fixed dates of examples/schedule-demo.txt."""
    first_tuesday = today + timedelta(days=(1 - today.weekday()) % 7 or 7)
    candidates = (first_tuesday + timedelta(weeks=n) for n in range(DEMO_WEEKS))
    return [day for day in candidates if calendar.is_business_day(day)]


def init_demo(session: Session, today: date, calendar: BusinessCalendar) -> bool:
    """Load the demo data into an empty registry; return False when there was data already."""
    if session.exec(select(Office)).first() is not None:
        return False
    import_registry(session, DEMO_REGISTRY)
    existing = set(session.exec(select(RegistrationDate.day)))
    for day in upcoming_registration_dates(today, calendar):
        if day not in existing:
            session.add(RegistrationDate(day=day))
    add_staff(session, DEMO_STAFF, "審査担当 (demo)")
    return True


def howto(settings: Settings) -> str:
    address = settings.smtp_address
    return "\n".join(
        [
            "",
            f"mailbot listens for SMTP on {address} (intake address {settings.intake_address}).",
            f"Outgoing mail is written to {settings.relay_target.path or settings.relay}.",
            "Send it the demo request from another terminal:",
            "    .venv/bin/mailbot demo send",
            "or any message of your own, e.g. with curl:",
            f"    curl smtp://{address} --mail-from yamada@example.co.jp \\",
            f"         --mail-rcpt {settings.intake_address} --upload-file MESSAGE.eml",
            "Then look at the receipt notice: .venv/bin/mailbot outbox list",
            "Stop with Ctrl-C.",
            "",
        ]
    )
