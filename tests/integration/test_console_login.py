"""Logging in to the staff console, and every attack on it the issue names, over real HTTP on
both databases: the link from the real login mail in the Maildir, the code, CSRF, sessions.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from db.models import AuditEvent, ConsoleSession, OutboundMessage
from mailbot.console.auth import ask_for_link
from mailbot.staff import add_staff, remove_staff
from tests.integration.test_notice_bytes import GOLDEN, UPDATE, normalised
from tests.integration.test_web import site_factory  # noqa: F401 (a fixture)
from tests.support.console import Console, console, login_mail  # noqa: F401 (a fixture)
from tests.support.harness import STAFF, Harness


def events(c: Console, *names: str) -> list[AuditEvent]:
    with c.h.session() as session:
        query = select(AuditEvent).order_by(col(AuditEvent.id))
        if names:
            query = query.where(col(AuditEvent.event).in_(names))
        return list(session.exec(query))


def test_the_link_logs_in_only_through_its_confirmation_form(console: Console) -> None:
    b = console.browser()
    asked = b.ask_for_link(STAFF)
    assert asked.status == 200
    assert "ログイン用のリンクとコードをメールで送りました" in asked.text
    link, _ = login_mail(console.h)
    assert link.startswith(console.site.url("/staff/login/"))

    # A mail scanner (its own cookies, no form) fetching the link spends nothing.
    scanner = console.browser()
    for _ in range(3):
        scanned = scanner.get(link)
        assert scanned.status == 200 and "ログインの確認" in scanned.text
        assert scanner.cookie("mailbot_console") is None
    assert scanner.get("/staff/", follow=False).status == 303

    confirm = b.get(link)
    home = b.post(link, {"csrf": confirm.csrf()}, follow=False)
    assert home.status == 303 and home.location.endswith("/staff/")
    session_cookie = next(c for c in home.set_cookies if c.startswith("mailbot_console="))
    assert "httponly" in session_cookie.lower()
    assert "samesite=lax" in session_cookie.lower()
    assert "secure" not in session_cookie.lower()  # the base URL is http
    page = b.get("/staff/")
    assert page.status == 200 and "審査待ち" in page.text
    assert [e.event for e in events(console, "console_login_issued", "console_login_redeemed")] == [
        "console_login_issued",
        "console_login_redeemed",
    ]

    # Used once: a second use (another browser, or the same) is refused, and audited.
    again = console.browser()
    refused = again.get(link)
    assert refused.status == 404 and "このリンクは使えません" in refused.text
    refusals = events(console, "console_login_refused")
    assert refusals[-1].detail["reason"] == "used"
    assert again.get("/staff/", follow=False).status == 303


def test_the_login_mail_is_pinned_byte_for_byte(harness: Harness) -> None:
    """The login mail (tests/golden/console_login.txt), its link and code aside."""
    with harness.session() as session:
        issued = ask_for_link(
            session, harness.settings, STAFF, now=harness.now, client="127.0.0.1"
        )
    assert issued is not None
    harness.deliver()
    with harness.session() as session:
        row = session.exec(
            select(OutboundMessage).where(col(OutboundMessage.kind) == "console_login")
        ).one()
    assert row.status == "sent" and row.raw is not None
    text = normalised(bytes(row.raw))
    assert issued.link in text and f"{issued.code[:4]} {issued.code[4:]}" in text
    text = text.replace(issued.link.rsplit("/", 1)[1], "LINK").replace(
        f"{issued.code[:4]} {issued.code[4:]}", "CODE"
    )
    golden = GOLDEN / "console_login.txt"
    if UPDATE:
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert text == golden.read_text(encoding="utf-8")
