"""The office's page, over real HTTP, opened by the link in a real contract reply: the contract
as in the mail, 新着情報 once a review has finished, the applications newest first with links
to their pages, and the application page's refusal for every bad link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urljoin

import pytest

from db.engine import session_scope
from mailbot.keys import keyring
from mailbot.office_link import office_link_token
from mailbot.tokens import link_token
from tests.integration.test_web import (
    NEWS,
    REFUSAL,
    Site,
    SiteFactory,
    approve,
    path_of,
    serve_web,
    submit,
    visible_text,
)
from tests.support.harness import Harness, body_text
from tests.support.loop import LoopThread
from tests.support.requests import KATO, form, mail

CONTRACT = "【NSS】契約内容のお知らせ"


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


@pytest.fixture
def site_factory(loop_thread: LoopThread) -> Iterator[SiteFactory]:
    sites: list[Site] = []

    def start(h: Harness) -> Site:
        site = serve_web(loop_thread, h)
        sites.append(site)
        return site

    yield start
    for site in sites:
        loop_thread.run(site.server.stop())


def contract_mail(h: Harness, sender: str = "yamada@example.co.jp") -> EmailMessage:
    (reply,) = h.round_trip(mail("", sender=sender, subject="契約内容確認"), mail_from=sender)
    assert str(reply["Subject"]) == CONTRACT
    return reply


def office_link(message: EmailMessage, office_code: str = "TYO01") -> str:
    found = re.search(rf"https?://\S+/o/{office_code}\?t=\S+", body_text(message))
    assert found, body_text(message)
    return found.group(0)


def test_the_link_in_the_contract_reply_opens_the_office_page(
    h: Harness, site_factory: SiteFactory
) -> None:
    approve(h, submit(h, "1ANACA0A"))  # 260001A, approved for 12/15
    submit(h, "1ANACA0B")  # 260002A, under review
    h.now += timedelta(minutes=5)
    link = office_link(contract_mail(h))
    page = site_factory(h).get(path_of(link))
    assert page.status == 200
    text = page.text
    for expected in [
        "契約内容・申込状況",
        "○○株式会社 東京事業所 通関部（事業所コード TYO01）",
        "新着情報",
        NEWS,
        "契約内容（2026年11月27日（金）現在）",
        "事業所コード\nTYO01",
        "登録連絡先\nsato@example.co.jp\nyamada@example.co.jp",
        "利用者IDの数\n利用中 1件・廃止申込中 2件・廃止済 0件",
        "netNACCS",
        "利用者コード 1ANAC\n1ANACA0A\n廃止申込中\n申込受付番号 260001A・\n審査終了（承認）\n利用開始日\n2026年12月15日（火）",
        "1ANACA0B\n廃止申込中\n申込受付番号 260002A・\n内容確認中\n利用開始日（予定）\n2026年12月15日（火）",
        "一般NACCS",
        "利用者コード 1ANAC\n1ANAC001\n利用中",
        "利用者コード 1ANAC：この事業所 未申込／OSK01 未申込",
        "2026年12月8日（火）\n← 本日お申込みの場合の最短の利用開始日",
        "申込状況（新しい順）",
    ]:
        assert expected in text, f"{expected!r} not in page:\n{text}"
    # Newest first, each with its status; the news line only for the reviewed one.
    assert text.index("260002A\n内容確認中") < text.index("260001A\n審査終了（承認）")
    assert "【260002A】" not in text
    assert text.index("English") > text.index("申込状況（新しい順）")  # Japanese first
    for other in ("1ANACA0C", "2BXYZ", "大阪"):
        assert other not in text


def test_each_application_links_to_its_own_page(h: Harness, site_factory: SiteFactory) -> None:
    approve(h, submit(h, "1ANACA0A"))
    site = site_factory(h)
    link = office_link(contract_mail(h))
    html = site.get(path_of(link)).body.decode()
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(not href.startswith(("http", "//", "/")) for href in hrefs)
    application = urljoin(
        link, next(href for href in hrefs if "/a/260001A" in href).replace("&amp;", "&")
    )
    page = site.get(path_of(application))
    assert page.status == 200 and "申込受付番号\n260001A" in page.text and NEWS in page.text


def test_security_headers_as_on_the_application_page(h: Harness, site_factory: SiteFactory) -> None:
    page = site_factory(h).get(path_of(office_link(contract_mail(h))))
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.body.decode()
    assert "<script" not in html and "src=" not in html and "<link" not in html


def test_bad_office_links_get_the_application_pages_refusal(
    h: Harness, site_factory: SiteFactory
) -> None:
    site = site_factory(h)
    link = office_link(contract_mail(h))
    osaka = office_link(contract_mail(h, sender=KATO), "OSK01")
    path, token = path_of(link).split("?t=")
    expiry, signature = token.split(".")
    with session_scope(h.engine) as session:
        keys = keyring(session, h.settings)
    receipt_token = link_token(keys, "TYO01", h.now + timedelta(days=1))  # an application link
    gone = office_link_token(keys, "GONE1", h.now + timedelta(days=1))
    attempts = {
        "tampered": f"{path}?t={expiry}.{('A' if signature[0] != 'A' else 'B') + signature[1:]}",
        "extended expiry": f"{path}?t={int(expiry) + 86400}.{signature}",
        "another office's token": f"{path}?t={path_of(osaka).split('?t=')[1]}",
        "an application link's token for the same text": f"{path}?t={receipt_token}",
        "no token": path,
        "office not in the registry, its own token": f"/o/GONE1?t={gone}",
        "an office token on the application page": f"/a/TYO01?t={token}",
    }
    application_refusal = site.get("/a/260001A?t=1.x")
    bodies = {name: site.get(attempt) for name, attempt in attempts.items()}
    for name, got in bodies.items():
        assert got.status == 404, name
        assert got.body == application_refusal.body, name
        assert got.headers["cache-control"] == "no-store", name
    assert REFUSAL in visible_text(application_refusal.body.decode())
    assert site.get(path_of(link)).status == 200


def test_an_expired_office_link_is_refused(h: Harness, site_factory: SiteFactory) -> None:
    site = site_factory(h)
    link = office_link(contract_mail(h))
    h.now += timedelta(days=h.settings.office_link_days) - timedelta(seconds=1)
    assert site.get(path_of(link)).status == 200
    h.now += timedelta(seconds=1)
    expired = site.get(path_of(link))
    assert expired.status == 404 and REFUSAL in expired.text


def test_the_office_page_says_when_there_is_nothing_new(
    h: Harness, site_factory: SiteFactory
) -> None:
    h.round_trip(
        mail(
            form(
                "1ANACA0C",
                start="2026年12月15日",
                office_code="OSK01",
                manager_email="ito@example.co.jp",
            ),
            sender=KATO,
        ),
        mail_from=KATO,
    )
    text = site_factory(h).get(path_of(office_link(contract_mail(h)))).text
    assert "新着情報\n新着情報はありません。" in text
    assert "申込状況（新しい順）\nこの事業所の申込はまだありません。" in text
    assert "利用者コード 1ANAC：この事業所 未申込／OSK01 申込済" in text
