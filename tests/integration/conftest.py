from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailbot.config import load_settings
from tests.support.harness import Harness, start_harness
from tests.support.loop import LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


@pytest.fixture
def harness(
    engine: Engine, database_url: str, tmp_path: Path, loop_thread: LoopThread
) -> Iterator[Harness]:
    settings = load_settings(
        home=tmp_path / "home",
        database_url=database_url,
        max_message_bytes=256 * 1024,
    )
    running = start_harness(engine, settings, loop_thread)
    yield running
    loop_thread.run(running.gateway.stop(grace=5))
