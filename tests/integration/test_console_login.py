"""Logging in to the staff console, and every attack on it the issue names, over real HTTP on
both databases: the link from the real login mail in the Maildir, the code, CSRF, sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import col, select

from db.engine import session_scope
from db.models import ConsoleSession, OutboundMessage
from mailbot.console.auth import ask_for_link
from mailbot.keys import keyring
from mailbot.staff import add_staff, remove_staff
from tests.integration.conftest import HarnessFactory
from tests.integration.test_notice_bytes import GOLDEN, UPDATE, normalised
from tests.integration.test_web import (
    CONFIRMATION,
    approve,
    link_in,
    recipient,
    serve_web,
    submit,
)
from tests.support.console import Browser, Console, login_mail, running_console
from tests.support.harness import STAFF, Harness
from tests.support.loop import LoopThread
from tests.support.replies import reply_address, reply_to


@pytest.fixture
def console(harness_factory: HarnessFactory, loop_thread: LoopThread) -> Iterator[Console]:
    with running_console(harness_factory, loop_thread) as running:
        yield running


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
    assert [
        e.event for e in console.h.audit_events("console_login_issued", "console_login_redeemed")
    ] == [
        "console_login_issued",
        "console_login_redeemed",
    ]

    # Used once: a second use (another browser, or the same) is refused, and audited.
    again = console.browser()
    refused = again.get(link)
    assert refused.status == 404 and "このリンクは使えません" in refused.text
    refusals = console.h.audit_events("console_login_refused")
    assert refusals[-1].detail["reason"] == "used"
    assert again.get("/staff/", follow=False).status == 303


def test_the_login_mail_is_pinned_byte_for_byte(harness: Harness) -> None:
    """The login mail (tests/golden/console_login.txt), its link and code aside."""
    with session_scope(harness.engine) as session:
        issued = ask_for_link(session, harness.settings, STAFF, now=harness.now, client="127.0.0.1")
    assert issued is not None
    harness.deliver()
    with session_scope(harness.engine) as session:
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


# --- attacks ---------------------------------------------------------------------------------


def test_a_link_stops_working_after_ten_minutes(console: Console) -> None:
    b = console.browser()
    b.ask_for_link(STAFF)
    link, code = login_mail(console.h)
    confirm = b.get(link)  # opened in time …
    console.h.now += timedelta(minutes=10, seconds=1)  # … confirmed too late
    assert b.post(link, {"csrf": confirm.csrf()}).status == 404
    assert b.get(link).status == 404
    login = b.get("/staff/login")
    late = b.post("/staff/login/code", {"csrf": login.csrf(), "email": STAFF, "code": code})
    assert late.status == 401 and "コードが正しくないか" in late.text
    assert b.get("/staff/", follow=False).status == 303
    reasons = [e.detail["reason"] for e in console.h.audit_events("console_login_refused")]
    assert reasons == ["expired", "expired", "wrong_code"]


def test_tokens_of_other_scopes_are_no_login_and_a_login_link_is_no_reply_token(
    console: Console,
) -> None:
    h = console.h
    sent = submit(h)
    review = next(m for m in sent if "審査依頼" in str(m["Subject"]) and recipient(m) == STAFF)
    review_token = reply_address(review).split("+t", 1)[1].split("@")[0]
    status_link = link_in(approve(h, sent), CONFIRMATION)
    status_token = status_link.split("?t=", 1)[1]
    b = console.browser()
    b.ask_for_link(STAFF)
    link, _ = login_mail(h)
    nonce = link.rsplit("/", 1)[1].split(".")[0]
    with session_scope(h.engine) as session:
        secret = keyring(session, h.settings).current.material
    # The login link's own nonce, MAC'd under the same key in another scope (a CSRF token's).
    other_scope = (
        nonce
        + "."
        + base64.urlsafe_b64encode(
            hmac.new(secret, b"mailbot.console-csrf:" + nonce.encode(), hashlib.sha256).digest()[
                :16
            ]
        )
        .decode()
        .rstrip("=")
    )
    for token in (review_token, status_token, other_scope):
        page = b.get(f"/staff/login/{token}")
        assert page.status == 404 and "このリンクは使えません" in page.text
        assert b.post(f"/staff/login/{token}", {"csrf": "x"}).status in (403, 404)
    assert b.get("/staff/", follow=False).status == 303
    reasons = [e.detail["reason"] for e in console.h.audit_events("console_login_refused")]
    assert reasons == ["malformed", "malformed", "bad_signature"]

    # The login link's token put in a reply address decides nothing.
    before = [a.status for a in h.applications()]
    reply = reply_to(review, sender=STAFF, body="承認します")
    h.round_trip(
        reply, mail_from=STAFF, rcpt_to=f"apply+t{link.rsplit('/', 1)[1]}@mailbot.localhost"
    )
    assert [a.status for a in h.applications()] == before
    # … and the link itself still logs in (nothing spent it).
    confirm = b.get(link)
    assert b.post(link, {"csrf": confirm.csrf()}).status == 200
    assert b.get("/staff/", follow=False).status == 200


def test_forms_without_their_csrf_token_do_nothing(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.browser()
    # Asking for a link without the page's token sends nothing.
    refused = b.post("/staff/login", {"email": STAFF})
    assert refused.status == 403
    h.deliver()
    assert not h.new_mail()
    b.log_in(h)
    application = b.get("/staff/a/260001A")
    version = application.field("version")
    for data in ({"version": version}, {"version": version, "csrf": "forged"}):
        page = b.post("/staff/a/260001A/approve", data)
        assert page.status == 403 and "操作を受け付けませんでした" in page.text
    assert [a.status for a in h.applications()] == ["under_review"]
    assert len(console.h.audit_events("console_csrf_refused")) == 2
    # Another browser's token is no good either.
    other = console.browser()
    other.log_in(h)
    token = other.get("/staff/").csrf()
    assert b.post("/staff/a/260001A/approve", {"version": version, "csrf": token}).status == 403
    # With its own token the same form works.
    done = b.post("/staff/a/260001A/approve", {"version": version, "csrf": application.csrf()})
    assert done.status == 200 and "承認しました" in done.text
    assert [a.status for a in h.applications()] == ["approved"]


def test_a_staff_member_made_inactive_loses_their_session_at_once(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.browser()
    page = b.log_in(h)
    assert page.status == 200
    form = b.get("/staff/a/260001A")
    with session_scope(h.engine) as session:
        remove_staff(session, STAFF)
    assert b.get("/staff/", follow=False).status == 303
    page = b.post(
        "/staff/a/260001A/approve", {"version": form.field("version"), "csrf": form.csrf()}
    )
    assert page.status == 403 and "ログインしてください" in page.text
    assert [a.status for a in h.applications()] == ["under_review"]
    # Made active again, the old session stays ended; and no new link is mailed meanwhile.
    with session_scope(h.engine) as session:
        add_staff(session, STAFF)
    assert b.get("/staff/", follow=False).status == 303
    ended = console.h.audit_events("console_session_ended")
    assert [e.detail["reason"] for e in ended] == ["staff_inactive"]


def test_guessing_codes_is_stopped(console: Console) -> None:
    h = console.h
    b = console.browser()
    b.ask_for_link(STAFF)
    link, code = login_mail(h)
    wrong = "00000000" if code.replace(" ", "") != "00000000" else "11111111"
    login = b.get("/staff/login")
    token = login.csrf()
    for _ in range(5):
        page = b.post("/staff/login/code", {"csrf": token, "email": STAFF, "code": wrong})
        assert page.status == 401 and "コードが正しくないか" in page.text
    # Five wrong tries and this login's code is dead, even the right one …
    page = b.post("/staff/login/code", {"csrf": token, "email": STAFF, "code": code})
    assert page.status == 401
    # … while its link, which was never guessed, still works.
    assert b.get(link).status == 200
    # Ten tries an hour per address, right or wrong: then even a fresh right code waits.
    b.ask_for_link(STAFF)
    _, fresh = login_mail(h)
    for _ in range(4):
        b.post("/staff/login/code", {"csrf": token, "email": STAFF, "code": wrong})
    page = b.post("/staff/login/code", {"csrf": token, "email": STAFF, "code": fresh})
    assert page.status == 401 and "試行回数が上限に達しました" in page.text
    assert b.get("/staff/", follow=False).status == 303
    h.now += timedelta(hours=1)  # the next hour: a new link's code, typed with a hyphen
    b.ask_for_link(STAFF)
    _, newest = login_mail(h)
    page = b.post(
        "/staff/login/code", {"csrf": token, "email": STAFF, "code": newest.replace(" ", "-")}
    )
    assert page.status == 200 and "審査待ち" in page.text
    reasons = [e.detail["reason"] for e in console.h.audit_events("console_login_refused")]
    assert reasons.count("wrong_code") == 10 and reasons.count("rate_limited") == 1


def test_asking_is_rate_limited_per_address_the_same_for_everyone(console: Console) -> None:
    h = console.h
    b = console.browser()
    for address in (STAFF, "nobody@example.jp"):
        pages = [b.ask_for_link(address) for _ in range(6)]
        assert {p.status for p in pages} == {200}
        assert len({p.text for p in pages}) == 1  # the sixth looks like the first
    h.deliver()
    assert len([m for m in h.new_mail() if recipient(m) == STAFF]) == 5
    reasons = [
        (e.actor, e.detail["reason"]) for e in console.h.audit_events("console_login_refused")
    ]
    assert reasons.count((STAFF, "rate_limited")) == 1
    assert reasons.count(("nobody@example.jp", "rate_limited")) == 1


def test_an_outsider_asking_gets_the_same_page_and_no_mail(console: Console) -> None:
    h = console.h
    staff_page = console.browser().ask_for_link(STAFF)
    outsider_page = console.browser().ask_for_link("mallory@example.jp")
    assert staff_page.status == outsider_page.status == 200
    assert staff_page.text.replace(STAFF, "ADDRESS") == outsider_page.text.replace(
        "mallory@example.jp", "ADDRESS"
    )
    h.deliver()
    assert [recipient(m) for m in h.new_mail()] == [STAFF]
    refused = console.h.audit_events("console_login_refused")
    assert [(e.actor, e.detail["reason"]) for e in refused] == [("mallory@example.jp", "not_staff")]


def test_login_makes_a_new_session_whatever_cookie_was_planted(console: Console) -> None:
    h = console.h
    attacker = console.browser()
    attacker.log_in(h)
    planted = attacker.cookie("mailbot_console")
    assert planted is not None
    victim = console.browser()
    victim.set_cookie("mailbot_console", planted)  # the attacker's own session, planted
    assert victim.get("/staff/", follow=False).status == 200  # (it is a real session)
    with session_scope(h.engine) as session:
        add_staff(session, "sato.staff@mailbot.localhost", "佐藤")
    console.browser().ask_for_link("sato.staff@mailbot.localhost")
    link, _ = login_mail(h, "sato.staff@mailbot.localhost")
    confirm = victim.get(link)  # the link opened in the browser with the planted cookie
    victim.post(link, {"csrf": confirm.csrf()})
    mine = victim.cookie("mailbot_console")
    assert mine is not None and mine != planted
    assert "sato.staff@mailbot.localhost" in victim.get("/staff/").text
    # The planted session was ended by the login, so the attacker's browser is out too.
    assert attacker.get("/staff/", follow=False).status == 303
    # A made-up value planted beforehand is never accepted, before or after a login.
    stranger = console.browser()
    stranger.set_cookie("mailbot_console", "chosen-by-the-attacker")
    assert stranger.get("/staff/", follow=False).status == 303
    stranger.log_in(h)
    assert stranger.cookie("mailbot_console") != "chosen-by-the-attacker"


def test_sessions_end_when_idle_after_their_lifetime_and_at_logout(console: Console) -> None:
    h = console.h
    b = console.browser()
    b.log_in(h)
    h.now += timedelta(minutes=29)
    assert b.get("/staff/", follow=False).status == 200
    h.now += timedelta(minutes=31)  # idle for 31 minutes
    assert b.get("/staff/", follow=False).status == 303
    b.log_in(h)
    for _ in range(25):  # busy all day: half an hour at a time
        h.now += timedelta(minutes=29)
        if b.get("/staff/", follow=False).status != 200:
            break
    assert b.get("/staff/", follow=False).status == 303
    assert [e.detail["reason"] for e in console.h.audit_events("console_session_ended")] == [
        "idle",
        "expired",
    ]
    home = b.log_in(h)
    assert b.get("/staff/logout", follow=False).status == 405  # a link cannot log out
    bye = b.post("/staff/logout", {"csrf": home.csrf()})
    assert bye.status == 200 and "ログアウトしました" in bye.text
    assert b.get("/staff/", follow=False).status == 303
    with session_scope(h.engine) as session:
        rows = list(session.exec(select(ConsoleSession)))
    assert all(row.ended_at is not None for row in rows) and len(rows) == 3


def test_console_pages_carry_the_status_pages_security_headers(console: Console) -> None:
    b = console.browser()
    for page in (b.get("/staff/login"), b.log_in(console.h), b.get("/staff/queues/review")):
        assert page.status == 200
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp and "script-src" not in csp
        assert "<script" not in page.html


def test_cookies_are_secure_when_the_base_url_is_https(
    harness_factory: HarnessFactory, loop_thread: LoopThread
) -> None:
    h = harness_factory(base_url="https://mailbot.example.jp")
    site = serve_web(loop_thread, h)
    page = Browser(site).get("/staff/login")
    loop_thread.run(site.server.stop())
    (cookie,) = page.set_cookies
    assert cookie.startswith("mailbot_console_pre=")
    assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
