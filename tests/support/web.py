"""The web server over real HTTP for tests: a uvicorn server on a loopback port (``serve_web``)
on the harness's clock, urllib as the client (``fetch``, ``Site.get``), a page's visible text
(``visible_text``) and a notice's recipient (``recipient``).

Shared by the status-page tests (tests/integration/test_web.py), the console's
(tests/support/console.py) and the others that serve the web app.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser

from db.engine import make_engine
from mailbot.config import HostPort, Settings
from mailbot.monitor import Monitor
from mailbot.web import WebServer, make_app
from tests.support.harness import Harness
from tests.support.loop import LoopThread


def recipient(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return visible_text(self.body.decode("utf-8"))


def fetch(url: str) -> Fetched:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return Fetched(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return Fetched(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "script", "title")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "script", "title")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "\n".join(parser.parts)


@dataclass
class Site:
    """A running web server; ``url(path)`` addresses it."""

    server: WebServer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def get(self, path: str) -> Fetched:
        return fetch(self.url(path))


def serve_web(
    loop: LoopThread,
    h: Harness,
    *,
    settings: Settings | None = None,
    port: int = 0,
    engine_url: str | None = None,
    monitor: Monitor | None = None,
) -> Site:
    """The app on a loopback port, on the harness's clock (``h.now`` may be moved)."""
    engine = make_engine(engine_url) if engine_url else h.engine
    app = make_app(engine, settings or h.settings, clock=lambda: h.now, monitor=monitor)
    server = WebServer(app, HostPort("127.0.0.1", port))
    loop.run(server.start())
    return Site(server)
