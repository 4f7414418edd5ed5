"""A received message's attachments on the console, over real HTTP on both databases
(``GET /staff/messages/{id}/attachments/{n}``): the bytes as sent, always as a download under
the sender's (Japanese) file name, with the console's security headers; nothing for a visitor
who is not logged in; a plain 404 page for an attachment or a message that does not exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from mailbot.console.sessions import COOKIE
from tests.integration.conftest import HarnessFactory
from tests.support.attachments import CSV, attachment_mail, table_csv
from tests.support.console import Console, running_console
from tests.support.harness import STAFF, Harness
from tests.support.loop import LoopThread

FORM_NAME = "利用者ID廃止申込書.csv"
HTML_NAME = "ご案内（重要）.html"
HTML = b"<html><body><script>alert(document.cookie)</script>\xe3\x81\x82</body></html>"
NOT_FOUND = "見つかりません\nNot found"


@pytest.fixture
def console(harness_factory: HarnessFactory, loop_thread: LoopThread) -> Iterator[Console]:
    with running_console(harness_factory, loop_thread) as running:
        yield running


def received(h: Harness, style: str = "outlook") -> int:
    """A request with the form as a CSV and an HTML page attached (file names as Outlook or
    Thunderbird encodes them), received and processed: its message id."""
    files = [(FORM_NAME, CSV, table_csv()), (HTML_NAME, "text/html", HTML)]
    h.send(attachment_mail(files, style=style))
    h.process()
    (message,) = h.inbound()
    assert message.id is not None
    return message.id


def filename_of(disposition: str) -> str:
    """The RFC 6266 ``filename*`` a browser saves the download under."""
    found = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition)
    assert found, disposition
    return unquote(found.group(1))


@pytest.mark.parametrize("style", ["outlook", "thunderbird"])
def test_staff_download_each_attachment_as_sent_under_its_japanese_name(
    console: Console, style: str
) -> None:
    message_id = received(console.h, style)
    b = console.logged_in()
    page = b.get(f"/staff/messages/{message_id}")
    links = re.findall(
        rf'href="(/staff/messages/{message_id}/attachments/\d+)">([^<]+)</a>', page.html
    )
    assert [name for _, name in links] == [FORM_NAME, HTML_NAME]
    for (href, name), sent in zip(links, [table_csv(), HTML], strict=True):
        got = b.get(href)
        assert got.status == 200
        assert got.body == sent
        # Always a download of opaque bytes: a sender's HTML is never rendered on the console.
        assert got.headers["content-type"] == "application/octet-stream"
        disposition = got.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        assert filename_of(disposition) == name
        ascii_name = re.search(r'filename="([^"]*)"', disposition)
        assert ascii_name and ascii_name.group(1).isascii()
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["cache-control"] == "no-store"
        assert got.headers["x-frame-options"] == "DENY"
        csp = got.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page(console: Console) -> None:
    message_id = received(console.h)
    b = console.browser()
    refused = b.get(f"/staff/messages/{message_id}/attachments/0", follow=False)
    assert refused.status == 303
    assert refused.location.endswith("/staff/login")
    assert table_csv() not in refused.body and "attachment" not in refused.headers.get(
        "content-disposition", ""
    )
    # Nor with a session cookie of its own making.
    b.set_cookie(COOKIE, "forged")
    assert b.get(f"/staff/messages/{message_id}/attachments/0", follow=False).status == 303
    # The same browser, logged in, gets it.
    assert b.log_in(console.h, STAFF).status == 200
    assert b.get(f"/staff/messages/{message_id}/attachments/0").body == table_csv()


def test_no_such_attachment_or_message_is_a_plain_not_found_page(console: Console) -> None:
    message_id = received(console.h)
    b = console.logged_in()
    for path in [
        f"/staff/messages/{message_id}/attachments/2",  # two attachments: 0 and 1
        f"/staff/messages/{message_id}/attachments/99",
        f"/staff/messages/{message_id}/attachments/-1",
        f"/staff/messages/{message_id}/attachments/first",
        f"/staff/messages/{message_id + 1000}/attachments/0",
        "/staff/messages/nonsense/attachments/0",
    ]:
        got = b.get(path)
        assert got.status == 404, path
        assert got.headers["content-type"].startswith("text/html"), path
        assert "content-disposition" not in got.headers, path
        assert NOT_FOUND in got.text, path
        assert "Traceback" not in got.html and "Error" not in got.text, path
        assert table_csv() not in got.body and HTML not in got.body, path
