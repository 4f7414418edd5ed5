"""The staff console end to end in headless Chromium (Debian ``chromium``), driven over the
DevTools protocol like a person at a keyboard (tests/support/cdp.py): ask for a link, read it
from the Maildir, open it (the GET alone logs nobody in, and the link still works afterwards),
confirm with the Enter key, see the queues, decide, find the applicant's notice in the Maildir
and the event in the timeline; a decision by reply between loading and posting the form is
reported as already decided, not doubled. Screenshots at 1200 and 390 CSS pixels go to
tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from db.engine import session_scope
from db.models import ConsoleSession
from tests.acceptance.conftest import LiveSite
from tests.acceptance.test_browser import ARTIFACTS, png_size
from tests.integration.test_web import CONFIRMATION, recipient, submit
from tests.support.cdp import Chromium
from tests.support.console import login_mail
from tests.support.harness import STAFF, Harness
from tests.support.replies import reply_address, reply_to
from tests.support.requests import YAMADA

DESKTOP = (1200, 900)
PHONE = (390, 844)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    chrome = Chromium(tmp_path / "profile")
    try:
        yield chrome
    finally:
        chrome.close()


def logged_in_sessions(h: Harness) -> int:
    with session_scope(h.engine) as session:
        return len(list(session.exec(select(ConsoleSession))))


def shoot(chrome: Chromium, name: str, variant: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for size, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
        path = ARTIFACTS / f"console-{name}-{size}-{variant}.png"
        path.unlink(missing_ok=True)
        chrome.screenshot(path, width, height, mobile=size == "phone")
        assert png_size(path)[0] == width
    # Nothing wider than the phone: no sideways scrolling of the page itself.
    chrome.page(
        "Emulation.setDeviceMetricsOverride",
        width=PHONE[0],
        height=PHONE[1],
        deviceScaleFactor=1,
        mobile=True,
    )
    assert chrome.scroll_width() <= PHONE[0], f"{name} is wider than a phone"
    chrome.page("Emulation.clearDeviceMetricsOverride")


def test_a_staff_member_logs_in_and_decides_in_chromium(
    site: LiveSite, browser: Chromium, request: pytest.FixtureRequest
) -> None:
    h, base_url = site.harness, site.base_url
    variant = request.node.callspec.id
    submit(h, "1ANACA0A")  # 260001A
    h.now += timedelta(minutes=12)
    second = submit(h, "1ANACA0B")  # 260002A
    h.now += timedelta(hours=2)  # the reviewer comes to it later

    # Ask for a link, typing the address and pressing Enter.
    browser.open(f"{base_url}/staff/login")
    assert "ログイン用リンクを依頼する" in browser.text
    shoot(browser, "login", variant)
    browser.type_into("#ask-email", STAFF)
    browser.press_enter()
    assert "ログイン用のリンクとコードをメールで送りました" in browser.text
    link, _ = login_mail(h)
    assert link.startswith(f"{base_url}/staff/login/")

    # Opening the link logs nobody in: the console still asks for a login …
    browser.open(link)
    assert "ログインの確認" in browser.text
    shoot(browser, "confirm", variant)
    assert logged_in_sessions(h) == 0
    browser.open(f"{base_url}/staff/")
    assert browser.url == f"{base_url}/staff/login"
    # … and the link still works afterwards: confirmed with Enter on the focused button.
    browser.open(link)
    assert "ログインの確認" in browser.text
    assert browser.evaluate("document.activeElement.type") == "submit"
    browser.press_enter()
    assert browser.url == f"{base_url}/staff/"
    assert logged_in_sessions(h) == 1
    assert "2\n審査待ち" in browser.text
    shoot(browser, "home", variant)

    browser.click('a[href$="/staff/queues/review"]')
    assert "260001A" in browser.text and "260002A" in browser.text
    shoot(browser, "review-queue", variant)

    # Decide 260001A on the web.
    h.now += timedelta(minutes=3)
    browser.open(f"{base_url}/staff/a/260001A")
    shoot(browser, "application", variant)
    browser.click('form[action$="/approve"] button[type=submit]')
    assert "承認しました" in browser.text
    timeline = browser.text[browser.text.index("経過") :]
    assert "承認 approved\nstaff@mailbot.localhost（管理画面）" in timeline
    h.deliver()
    notices = [m for m in h.new_mail() if CONFIRMATION in str(m["Subject"])]
    assert YAMADA in [recipient(m) for m in notices]
    browser.open(f"{base_url}/staff/a/260001A")
    assert "送信済み / sent" in browser.text[browser.text.index("経過") :]
    shoot(browser, "decided", variant)

    # 260002A: the page is loaded, a colleague's reply decides, then the form is posted.
    h.now += timedelta(minutes=3)
    browser.open(f"{base_url}/staff/a/260002A")
    h.now += timedelta(minutes=1)
    review = next(m for m in second if "審査依頼" in str(m["Subject"]) and recipient(m) == STAFF)
    h.round_trip(
        reply_to(review, sender=STAFF, body="却下 利用者IDが誤っています"),
        mail_from=STAFF,
        rcpt_to=reply_address(review),
    )
    browser.type_into("#start_date", "")
    browser.click('form[action$="/approve"] button[type=submit]')
    text = browser.text
    assert (
        "実行できませんでした" in text and "already decided by staff@mailbot.localhost at" in text
    )
    shoot(browser, "already-decided", variant)
    assert [a.status for a in h.applications()] == ["approved", "rejected"]
    assert len(h.audit_events("review_finished")) == 2
    browser.open(f"{base_url}/staff/a/260002A")
    assert "却下 rejected\nstaff@mailbot.localhost（メール返信）" in browser.text

    browser.click('a[href$="/staff/search"]')
    browser.type_into('input[name="q"]', "1ANAC")
    browser.press_enter()
    assert "結果 2件" in browser.text
    shoot(browser, "search", variant)
    browser.open(f"{base_url}/staff/health")
    shoot(browser, "health", variant)
