from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from mailbot.config import load_settings
from mailbot.gateway.smtp import SmtpGateway
from tests.support.harness import Harness, start_harness
from tests.support.loop import LoopThread

HarnessFactory = Callable[..., Harness]
GatewayFactory = Callable[..., SmtpGateway]
GATEWAY_DOMAIN = "mailbot.test"  # the domain of start_gateway's gateways


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


@pytest.fixture
def harness_factory(
    engine: Engine, database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> Iterator[HarnessFactory]:
    """Start mailbot in-process with settings overridden (one per test)."""
    started: list[Harness] = []

    def start(**overrides: Any) -> Harness:
        options: dict[str, Any] = {"max_message_bytes": 256 * 1024, **overrides}
        settings = load_settings(home=tmp_path / "home", database_url=database_url, **options)
        running = start_harness(engine, settings, loop_thread)
        started.append(running)
        return running

    yield start
    for running in started:
        loop_thread.run(running.gateway.stop(grace=5))


@pytest.fixture
def harness(harness_factory: HarnessFactory) -> Harness:
    return harness_factory()


@pytest.fixture
def start_gateway(
    engine: Engine, database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> Iterator[GatewayFactory]:
    """Start a bare SMTP gateway (for GATEWAY_DOMAIN, on port 0) with settings overridden;
    each one started is stopped after the test."""
    started: list[SmtpGateway] = []

    def start(**overrides: Any) -> SmtpGateway:
        settings = load_settings(
            home=tmp_path / "home", database_url=database_url, domain=GATEWAY_DOMAIN, **overrides
        )
        gateway = SmtpGateway(engine, settings, port=0)
        loop_thread.run(gateway.start())
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        loop_thread.run(gateway.stop(grace=5))
