"""Fixtures for whole-process tests: ``mailbot serve`` as a real subprocess, and a relay sink.

Each ``serve_factory(...)`` call builds a process with its own home, SMTP port and settings
(``MAILBOT_*`` variables); the test starts, kills (-9), terminates and restarts it. Whatever is
still running at the end of the test is killed, and its log tail is printed (pytest shows it
when the test failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.helpers import ServeFactory, ServeProcess
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
