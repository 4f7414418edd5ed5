"""Demo data for ``make run``: the example registry, a schedule that is always in the future,
one staff member, and a request that passes every rule today."""

from __future__ import annotations

import smtplib
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlmodel import Session, col, select

from db.models import Office, RegistrationDate
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.errors import NotFoundError
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
    if not DEMO_REGISTRY.is_file():
        # The demo data is part of the source checkout, not of an installed mailbot.
        raise NotFoundError(
            f"the demo registry {DEMO_REGISTRY} is not here: demo data comes with the source "
            "checkout (make run); an installed mailbot imports real data with `mailbot "
            "registry import` and `mailbot schedule import`"
        )
    import_registry(session, DEMO_REGISTRY)
    existing = set(session.exec(select(col(RegistrationDate.day))))
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
            "Then look at what came out: .venv/bin/mailbot outbox list  (the mails are in the",
            "Maildir above; the link in a notice opens the application's page on "
            f"http://{settings.web_address}/)",
            "and decide it as staff (the receipt number is in `.venv/bin/mailbot list`):",
            f"    .venv/bin/mailbot approve RECEIPT_NO --by {DEMO_STAFF}",
            f"or on the staff console, http://{settings.web_address}/staff/ (ask for a login "
            f"link for {DEMO_STAFF}; the mail lands in the Maildir above).",
            "Stop with Ctrl-C.",
            "",
        ]
    )


def demo_request(settings: Settings, today: date, calendar: BusinessCalendar) -> bytes:
    """A request from the demo registry's Tokyo contact that passes every rule today."""
    earliest = calendar.add_business_days(today, settings.lead_business_days)
    start = next(d for d in upcoming_registration_dates(today, calendar) if d >= earliest)
    body = "\n".join(
        [
            "お世話になっております。利用者IDの廃止を申し込みます。",
            "",
            "■事業所コード：TYO01",
            "■廃止する利用者ID：1ANACA0A",
            f"■利用開始希望日：{start.year}年{start.month}月{start.day}日",
            "■変更する理由：端末の削減のため",
            "■申込担当者：山田 太郎",
            "■申込担当者電話番号：03-1234-5678",
            "■管理責任者：佐藤 花子",
            "■管理責任者メールアドレス：sato@example.co.jp",
            "",
            "よろしくお願いいたします。",
        ]
    )
    message = EmailMessage()
    message["From"] = "山田 太郎 <yamada@example.co.jp>"
    message["To"] = settings.intake_address
    message["Subject"] = "利用者IDの廃止申込"
    message["Message-ID"] = make_msgid(domain="example.co.jp")
    message["Date"] = format_datetime(datetime.now(settings.zone))
    message.set_content(body)
    return message.as_bytes()


def send_demo_request(settings: Settings, raw: bytes) -> None:
    address = settings.smtp_address
    with smtplib.SMTP(address.host, address.port, timeout=30) as client:
        client.sendmail("yamada@example.co.jp", [settings.intake_address], raw)
