"""The staff console over real HTTP, as a browser without JavaScript uses it: a cookie jar,
forms posted URL-encoded, redirects followed by hand (so each response's cookies and status can
be looked at), the login link read from the mail in the Maildir.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from db.engine import session_scope
from mailbot.registry import import_registry
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness, body_text
from tests.support.loop import LoopThread
from tests.support.requests import SATO, YAMADA, form, mail
from tests.support.smtp import free_port
from tests.support.web import Site, recipient, serve_web, visible_text

LOGIN_SUBJECT = "管理画面へのログイン"
LINK = re.compile(r"https?://\S+/staff/login/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
CODE = re.compile(r"■確認コード：(\d{4} \d{4})")


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes
    url: str

    @property
    def html(self) -> str:
        return self.body.decode("utf-8")

    @property
    def text(self) -> str:
        return visible_text(self.html)

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def csrf(self, index: int = 0) -> str:
        found = re.findall(r'name="csrf" value="([^"]+)"', self.html)
        assert found, f"no CSRF token on the page:\n{self.text[:2000]}"
        return str(found[index])

    def field(self, name: str) -> str:
        found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', self.html)
        assert found, f"no field {name}"
        return found.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Browser:
    """One browser: its own cookies."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.site.url(path)

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            response = self.opener.open(request, timeout=30)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            cookies = response.headers.get_all("set-cookie") or []
            return Page(response.status, headers, cookies, response.read(), request.full_url)

    def get(self, path: str, *, follow: bool = True) -> Page:
        page = self._open(urllib.request.Request(self.url(path)))
        return self._follow(page) if follow else page

    def post(
        self, path: str, data: dict[str, str] | list[tuple[str, str]], *, follow: bool = True
    ) -> Page:
        body = urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(
            self.url(path),
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        page = self._open(request)
        return self._follow(page) if follow else page

    def _follow(self, page: Page) -> Page:
        for _ in range(5):
            if page.status not in (301, 302, 303, 307):
                return page
            page = self._open(urllib.request.Request(urllib.parse.urljoin(page.url, page.location)))
        return page

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def set_cookie(self, name: str, value: str) -> None:
        self.jar.set_cookie(
            http.cookiejar.Cookie(
                0,
                name,
                value,
                None,
                False,
                "127.0.0.1",
                True,
                False,
                "/staff",
                True,
                False,
                None,
                False,
                None,
                None,
                {"HttpOnly": ""},
            )
        )

    # --- logging in ----------------------------------------------------------------------------

    def ask_for_link(self, address: str) -> Page:
        login = self.get("/staff/login")
        return self.post("/staff/login", {"csrf": login.csrf(), "email": address})

    def log_in(self, h: Harness, address: str = STAFF) -> Page:
        """Ask for a link, take it from the mail, open it, confirm: the home page."""
        self.ask_for_link(address)
        link, _ = login_mail(h, address)
        confirm = self.get(link)
        return self.post(link, {"csrf": confirm.csrf()})


def login_mail(h: Harness, address: str = STAFF) -> tuple[str, str]:
    """Deliver the outbox; the link and code of the newest login mail to ``address``."""
    h.deliver()
    mails = [
        m for m in h.new_mail() if LOGIN_SUBJECT in str(m["Subject"]) and recipient(m) == address
    ]
    assert mails, f"no login mail to {address}"
    return link_and_code(mails[-1])


def link_and_code(message: EmailMessage) -> tuple[str, str]:
    text = body_text(message)
    link, code = LINK.search(text), CODE.search(text)
    assert link and code, text
    return link.group(0), code.group(1)


@dataclass
class Console:
    h: Harness
    site: Site

    def browser(self) -> Browser:
        return Browser(self.site)

    def logged_in(self, address: str = STAFF) -> Browser:
        """A browser that has logged in as ``address`` (a staff member) the whole way."""
        b = self.browser()
        assert b.log_in(self.h, address).status == 200
        return b


@contextlib.contextmanager
def running_console(
    harness_factory: HarnessFactory, loop: LoopThread, **overrides: Any
) -> Iterator[Console]:
    """mailbot with its web server on a free port that its mails link to."""
    port = free_port()
    h = harness_factory(base_url=f"http://127.0.0.1:{port}", **overrides)
    site = serve_web(loop, h, port=port)
    try:
        yield Console(h, site)
    finally:
        loop.run(site.server.stop())


def office_applications(
    h: Harness, folder: Path, count: int, start: date, *, registered: int | None = None
) -> list[str]:
    """``count`` requests from office BLK01 (one user ID each, 3CBLK000 on; ``registered`` IDs
    in its registry, ``count`` by default), processed: their receipt numbers, each with its
    review request to STAFF in the outbox."""
    registry = folder / "blk01.csv"
    lines = ["office_code,company,office,department,contact_emails,user_id"]
    lines += [
        f"BLK01,一括株式会社,本社,総務部,{YAMADA};{SATO},3CBLK{n:03d}"
        for n in range(count if registered is None else registered)
    ]
    registry.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with session_scope(h.engine) as session:
        import_registry(session, registry)
    for n in range(count):
        h.send(mail(form(f"3CBLK{n:03d}", office_code="BLK01", start=start)))
    h.process()
    return [a.receipt_no for a in h.applications()]
