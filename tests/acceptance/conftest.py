"""Fixtures for whole-process tests: ``mailbot serve`` as a real subprocess, a relay sink, and
mailbot with its web server on a free port for a real browser.

Each ``serve_factory(...)`` call builds a process with its own home, SMTP port and settings
(``MAILBOT_*`` variables); the test starts, kills (-9), terminates and restarts it. Whatever is
still running at the end of the test is killed, and its log tail is printed (pytest shows it
when the test failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.engine import make_engine
from mailbot.config import HostPort, load_settings
from mailbot.web import WebServer, make_app
from tests.acceptance.helpers import ServeFactory, ServeProcess
from tests.support.harness import Harness, start_harness
from tests.support.loop import LoopThread
from tests.support.smtp import Sink, free_port


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[ServeFactory]:
    made: list[ServeProcess] = []

    def make(
        name: str = "serve",
        *,
        database_url: str | None = None,
        relay: str | None = None,
        **settings: str,
    ) -> ServeProcess:
        home = tmp_path / name
        values = {
            "smtp_listen": f"127.0.0.1:{free_port()}",
            "web_listen": f"127.0.0.1:{free_port()}",  # serve runs the status page too
            # Fast retries, so the tests do not wait out production backoff.
            "outbox_backoff_seconds": "0.5",
            "worker_poll_seconds": "0.2",
            **settings,
        }
        if database_url is not None:
            values["database_url"] = database_url
        if relay is not None:
            values["relay"] = relay
        process = ServeProcess(name, home, values)
        made.append(process)
        return process

    yield make
    for process in made:
        process.cleanup()
        print(f"--- {process.name} log tail ({process.log_path}) ---\n{process.log_tail(30)}")


@pytest.fixture
def sink() -> Iterator[Sink]:
    relay = Sink().start()
    yield relay
    relay.stop()


@dataclass
class LiveSite:
    harness: Harness
    base_url: str


@pytest.fixture
def site(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[LiveSite]:
    """mailbot whose mails link to a web server on a free port, over the same database."""
    loop = LoopThread()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = load_settings(home=tmp_path / "home", database_url=database_url, base_url=base_url)
    harness = start_harness(engine, settings, loop)
    web_engine = make_engine(database_url)  # its own engine, as `mailbot serve` has
    app = make_app(web_engine, settings, clock=lambda: harness.now)
    server = WebServer(app, HostPort("127.0.0.1", port))
    loop.run(server.start())
    try:
        yield LiveSite(harness, base_url)
    finally:
        loop.run(server.stop())
        loop.run(harness.gateway.stop(grace=5))
        web_engine.dispose()
        loop.close()
