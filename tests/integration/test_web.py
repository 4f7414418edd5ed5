"""The page behind the link, over real HTTP: a uvicorn server on a loopback port, urllib as the
client, links taken from real notices produced by the harness (request → approval by reply).

The helpers at the top (``submit``, ``approve``, ``link_in``, ``path_of``) are shared with
test_documents.py and the browser acceptance test; the web ones (``serve_web``, ``Site``,
``fetch``, ``visible_text``, ``recipient``) live in tests/support/web.py and are imported here
under their own names for the modules that still import them from this one.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from db.engine import session_scope
from mailbot.config import HostPort, load_settings
from mailbot.keys import keyring
from mailbot.monitor import RUNNING, Monitor
from mailbot.tokens import link_token
from mailbot.web import WebServer, make_app
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.loop import LoopThread
from tests.support.replies import reply_address, reply_to
from tests.support.requests import SATO, YAMADA, form, mail
from tests.support.smtp import free_port
from tests.support.web import Site as Site
from tests.support.web import fetch as fetch
from tests.support.web import recipient as recipient
from tests.support.web import serve_web as serve_web
from tests.support.web import visible_text as visible_text

START = date(2026, 12, 15)  # a registration date of the demo schedule
CONFIRMATION = "【NSS】利用申込確認完了のお知らせ"
NEWS = "【260001A】利用申込の審査が終了しました。通知内容を確認してください。"
MAY_DIFFER = "「利用開始希望日」は、確定した利用開始日と異なることがあります。"
NOT_YET = "承認通知は利用開始日（2026年12月15日（火））以降に出力できます。"
REFUSAL = "このページを表示できません。"
# 2026-12-15 00:00 in Tokyo: the first moment the approval notice exists.
START_MOMENT = datetime.fromisoformat("2026-12-15T00:00:00+09:00")


# --- shared helpers --------------------------------------------------------------------------


def submit(h: Harness, *user_ids: str, remarks: str | None = None) -> list[EmailMessage]:
    """A valid request from YAMADA (TYO01): the receipt notices and review requests."""
    body = form(*(user_ids or ("1ANACA0A", "1ANACA0B")), start=START, remarks=remarks)
    return h.round_trip(mail(body))


def approve(h: Harness, sent: list[EmailMessage]) -> list[EmailMessage]:
    """The staff member approves by replying to their review request."""
    review = next(m for m in sent if "審査依頼" in str(m["Subject"]) and recipient(m) == STAFF)
    raw = reply_to(review, sender=STAFF, body="承認します")
    return h.round_trip(raw, mail_from=STAFF, rcpt_to=reply_address(review))


def link_in(messages: list[EmailMessage], subject: str, to: str = YAMADA) -> str:
    """The status-page link in the notice with ``subject`` (a part of it) mailed to ``to``."""
    notice = next(m for m in messages if subject in str(m["Subject"]) and recipient(m) == to)
    found = re.search(r"https?://\S+/a/\S+", body_text(notice))
    assert found, body_text(notice)
    return found.group(0)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


SiteFactory = Callable[..., Site]


@pytest.fixture
def site_factory(loop_thread: LoopThread) -> Iterator[SiteFactory]:
    sites: list[Site] = []

    def start(h: Harness, **kwargs: object) -> Site:
        site = serve_web(loop_thread, h, **kwargs)  # type: ignore[arg-type]
        sites.append(site)
        return site

    yield start
    for site in sites:
        loop_thread.run(site.server.stop())


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    return harness_factory()


@pytest.fixture
def approved(h: Harness) -> str:
    """260001A approved for START; the link from YAMADA's confirmation-complete notice."""
    notices = approve(h, submit(h))
    return link_in(notices, CONFIRMATION)


# --- the status page ---------------------------------------------------------------------------


def test_the_link_in_the_confirmation_notice_opens_the_application(
    h: Harness, approved: str, site_factory: SiteFactory
) -> None:
    page = site_factory(h).get(path_of(approved))
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    for expected in [
        "申込内容参照",
        NEWS,
        "申込受付番号\n260001A",
        "申込受付年月日\n2026年11月27日（金）",
        "状況\n審査終了（承認）",
        "利用開始日（適用日）\n2026年12月15日（火）",
        "利用開始希望日\n2026年12月15日（火）",
        MAY_DIFFER,
        "1ANACA0A\n1ANAC\nA0A\nnetNACCS",
        "1ANACA0B\n1ANAC\nA0B\nnetNACCS",
        "○○株式会社 東京事業所 通関部（TYO01）",
        "申込担当者\n山田 太郎\n03-1234-5678\nyamada@example.co.jp",
        "管理責任者\n佐藤 花子\nsato@example.co.jp",
        "変更する理由\n事業所の統合により端末を削減するため",
        "備考\nなし",
        NOT_YET,
        "申込書を出力する（PDF）",
    ]:
        assert expected in text, f"{expected!r} not in page:\n{text}"
    assert "承認通知を出力する" not in text  # not before the start date
    # Japanese first: the English summary comes after everything else.
    assert text.index("English") > text.index("申込書を出力する（PDF）")
    # The steps of the guide's flow, 審査終了 the current one.
    assert re.search(r'<li class="current" aria-current="step">審査終了</li>', page.body.decode())


def test_token_pages_carry_the_security_headers_and_load_nothing(
    h: Harness, approved: str, site_factory: SiteFactory
) -> None:
    page = site_factory(h).get(path_of(approved))
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "server" not in page.headers
    html = page.body.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<script" not in html and "src=" not in html and "<link" not in html
    # Every link is relative to the page: nothing leaves the site, nothing names a host.
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(not href.startswith(("http", "//", "/")) for href in hrefs)


def test_the_receipt_notice_link_shows_the_review_in_progress(
    h: Harness, site_factory: SiteFactory
) -> None:
    link = link_in(submit(h, remarks="至急お願いします"), "受付完了")
    text = site_factory(h).get(path_of(link)).text
    assert "状況\n内容確認中" in text
    assert "利用開始日（予定）\n2026年12月15日（火）" in text
    assert "備考\n至急お願いします" in text
    assert NEWS not in text
    assert "承認通知は、審査終了（承認）後、利用開始日以降に出力できます。" in text
    assert "申込書を出力する（PDF）" in text


def test_a_user_supplied_value_is_escaped(h: Harness, site_factory: SiteFactory) -> None:
    link = link_in(submit(h, remarks="<b>太字</b> & <script>x</script>"), "受付完了")
    page = site_factory(h).get(path_of(link))
    html = page.body.decode()
    assert "&lt;b&gt;太字&lt;/b&gt; &amp; &lt;script&gt;" in html
    assert "<b>" not in html and "<script" not in html


# --- refusals: one page for every failure ------------------------------------------------------


def test_bad_links_all_get_the_same_refusal(
    h: Harness, approved: str, site_factory: SiteFactory
) -> None:
    second = link_in(submit(h, "1ANAC001"), "受付完了")  # 260002A
    site = site_factory(h)
    path, token = path_of(approved).split("?t=")
    other_token = path_of(second).split("?t=")[1]
    expiry, signature = token.split(".")
    tampered_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    later_expiry = str(int(expiry) + 86400)
    with session_scope(h.engine) as session:
        keys = keyring(session, h.settings)
    forged_for_missing = link_token(keys, "269999A", h.now + timedelta(days=1))
    attempts = {
        "tampered signature": f"{path}?t={expiry}.{tampered_signature}",
        "extended expiry": f"{path}?t={later_expiry}.{signature}",
        "another receipt's token": f"{path}?t={other_token}",
        "no token": path,
        "empty token": f"{path}?t=",
        "lower-case receipt": f"{path.lower()}?t={token}",
        "unknown receipt, real token": f"/a/269999A?t={token}",
        "unknown receipt, its own valid token": f"/a/269999A?t={forged_for_missing}",
        "unknown path": f"/b/260001A?t={token}",
        "approval notice, another token": f"{path}/approval-notice.pdf?t={other_token}",
        "application form, tampered": f"{path}/application-form.pdf?t={expiry}.x",
    }
    bodies = {}
    for name, attempt in attempts.items():
        got = site.get(attempt)
        assert got.status == 404, name
        assert got.headers["cache-control"] == "no-store", name
        bodies[name] = got.body
    assert len(set(bodies.values())) == 1, "refusals must not differ"
    assert REFUSAL in visible_text(next(iter(bodies.values())).decode())
    assert "260001A" not in next(iter(bodies.values())).decode()
    assert site.get(path_of(approved)).status == 200  # the genuine link still works


def test_an_expired_link_is_refused(h: Harness, approved: str, site_factory: SiteFactory) -> None:
    site = site_factory(h)
    h.now = h.now + timedelta(days=h.settings.link_token_days) - timedelta(seconds=1)
    assert site.get(path_of(approved)).status == 200
    h.now = h.now + timedelta(seconds=1)
    expired = site.get(path_of(approved))
    assert expired.status == 404 and REFUSAL in expired.text


# --- documents ---------------------------------------------------------------------------------


def test_the_approval_notice_only_from_the_start_date(
    h: Harness, approved: str, site_factory: SiteFactory
) -> None:
    site = site_factory(h)
    path, query = path_of(approved).split("?")
    notice = f"{path}/approval-notice.pdf?{query}"
    h.now = START_MOMENT - timedelta(seconds=1)  # 23:59:59 on the day before, in Tokyo
    early = site.get(notice)
    assert early.status == 403
    assert NOT_YET in early.text
    assert "2026-12-15" in early.text  # and in English
    assert early.headers["cache-control"] == "no-store"
    h.now = START_MOMENT
    pdf = site.get(notice)
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith(
        'attachment; filename="approval-notice-260001A.pdf"'
    )
    assert pdf.body.startswith(b"%PDF-")
    page = site.get(path_of(approved)).text
    assert "承認通知を出力する（PDF）" in page and NOT_YET not in page


def test_the_application_form_any_time(h: Harness, site_factory: SiteFactory) -> None:
    link = link_in(submit(h), "受付完了")
    path, query = path_of(link).split("?")
    form_pdf = site_factory(h).get(f"{path}/application-form.pdf?{query}")
    assert form_pdf.status == 200 and form_pdf.body.startswith(b"%PDF-")
    assert form_pdf.headers["referrer-policy"] == "no-referrer"


def test_a_rejected_application_has_no_approval_notice(
    h: Harness, site_factory: SiteFactory
) -> None:
    sent = submit(h)
    review = next(m for m in sent if "審査依頼" in str(m["Subject"]) and recipient(m) == STAFF)
    raw = reply_to(review, sender=STAFF, body="却下 利用者IDが誤っています")
    notices = h.round_trip(raw, mail_from=STAFF, rcpt_to=reply_address(review))
    link = link_in(notices, "審査結果", to=SATO)
    site = site_factory(h)
    text = site.get(path_of(link)).text
    assert "状況\n審査終了（却下）" in text and NEWS in text
    assert "却下の理由\n利用者IDが誤っています" in text
    path, query = path_of(link).split("?")
    h.now = START_MOMENT + timedelta(days=1)
    refused = site.get(f"{path}/approval-notice.pdf?{query}")
    assert refused.status == 403
    assert "この申込は承認されていないため、承認通知はありません。" in refused.text


# --- health --------------------------------------------------------------------------------------


def outbox_here() -> Monitor:
    """A process that runs the outbox (its task running), as serve would tell the web app."""
    monitor = Monitor(["outbox"])
    monitor.part("outbox").report(RUNNING)
    return monitor


def test_healthz_of_a_web_only_process_checks_the_database(
    h: Harness, site_factory: SiteFactory
) -> None:
    health = site_factory(h).get("/healthz")
    assert health.status == 200
    assert health.headers["content-type"] == "application/json"
    body = json.loads(health.body)
    assert body["status"] == "ok" and body["database"] == {"ok": True}
    assert "outbox" not in body  # not this process's part: its relay is not its business
    assert body["waiting"]["messages"] == 0 and body["waiting"]["quarantined"] == 0


def test_healthz_with_a_maildir_relay(h: Harness, site_factory: SiteFactory) -> None:
    health = site_factory(h, monitor=outbox_here()).get("/healthz")
    assert health.status == 200
    body = json.loads(health.body)
    assert body["outbox"] == {"ok": True, "state": "running", "relay": "reachable", "failed": 0}


def test_healthz_with_an_smtp_relay(
    h: Harness, site_factory: SiteFactory, database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as relay:
        relay.bind(("127.0.0.1", 0))
        relay.listen()
        port = relay.getsockname()[1]
        up = load_settings(
            home=tmp_path / "home", database_url=database_url, relay=f"smtp://127.0.0.1:{port}"
        )
        assert site_factory(h, settings=up, monitor=outbox_here()).get("/healthz").status == 200
    closed = free_port()  # nothing listens there now
    down = load_settings(
        home=tmp_path / "home", database_url=database_url, relay=f"smtp://127.0.0.1:{closed}"
    )
    health = site_factory(h, settings=down, monitor=outbox_here()).get("/healthz")
    assert health.status == 503
    body = json.loads(health.body)
    assert (body["status"], body["failing"]) == ("unavailable", ["outbox"])
    assert body["outbox"]["relay"] == "unreachable"
    assert body["outbox"]["error"] == "relay unreachable"
    assert str(closed).encode() not in health.body  # no detail of the deployment to strangers


def test_healthz_when_the_maildir_cannot_be_written(
    h: Harness, site_factory: SiteFactory, database_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    broken = load_settings(
        home=tmp_path / "home", database_url=database_url, relay=f"maildir:{blocker / 'sent'}"
    )
    health = site_factory(h, settings=broken, monitor=outbox_here()).get("/healthz")
    assert health.status == 503
    assert json.loads(health.body)["outbox"]["error"] == "relay maildir not writable"


def test_healthz_when_the_database_is_unreachable(
    h: Harness, site_factory: SiteFactory, tmp_path: Path
) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    health = site_factory(h, engine_url=f"sqlite:///{tmp_path}").get("/healthz")
    assert health.status == 503
    body = json.loads(health.body)
    assert body["database"] == {"ok": False, "error": "unreachable"}
    assert body["failing"] == ["database"] and "waiting" not in body


def test_a_busy_port_is_a_clear_error(h: Harness, loop_thread: LoopThread) -> None:
    from mailbot.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WebServer(make_app(h.engine, h.settings), HostPort("127.0.0.1", port))
        with pytest.raises(ConfigError, match=f"MAILBOT_WEB_LISTEN 127.0.0.1:{port}"):
            loop_thread.run(server.start())
