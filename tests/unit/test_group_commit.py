"""The gateway's group committer: batching, answers, and stopping (the store is stubbed here;
tests/integration/test_gateway_store.py and test_smtp_gateway.py use real databases)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, create_engine

from mailbot.errors import StoreError
from mailbot.gateway import group_commit
from mailbot.gateway.group_commit import GroupCommitter
from mailbot.gateway.store import Incoming, StoreResult

ENGINE: Engine = create_engine("sqlite://")  # never used: store_messages is replaced


async def store(committer: GroupCommitter, raw: bytes) -> StoreResult:
    return await committer.store(raw, channel="smtp", envelope_from="", envelope_to=["a@b.jp"])


def test_concurrent_stores_share_batches_and_each_gets_its_own_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[int] = []

    def slow_store(_engine: Engine, batch: Sequence[Incoming]) -> list[StoreResult]:
        time.sleep(0.02)  # a commit: meanwhile the next stores queue up
        batches.append(len(batch))
        return [StoreResult(int(i.raw), duplicate=False) for i in batch]

    monkeypatch.setattr(group_commit, "store_messages", slow_store)
    committer = GroupCommitter(ENGINE)

    async def main() -> list[StoreResult]:
        results = await asyncio.gather(*(store(committer, str(n).encode()) for n in range(20)))
        await committer.close()
        return list(results)

    results = asyncio.run(main())
    assert [r.inbound_id for r in results] == list(range(20))
    assert sum(batches) == 20 and len(batches) < 20  # grouped, none lost, none twice


def test_a_failed_batch_fails_every_store_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_engine: Engine, batch: Sequence[Incoming]) -> list[StoreResult]:
        raise OSError("disk full")

    monkeypatch.setattr(group_commit, "store_messages", broken)
    committer = GroupCommitter(ENGINE)

    async def main() -> None:
        with pytest.raises(StoreError, match="disk full"):
            await store(committer, b"1")
        await committer.close()

    asyncio.run(main())


def test_close_gives_up_on_a_writer_stuck_in_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def stuck(_engine: Engine, batch: Sequence[Incoming]) -> list[StoreResult]:
        release.wait(10)
        return [StoreResult(1, duplicate=False) for _ in batch]

    monkeypatch.setattr(group_commit, "store_messages", stuck)
    committer = GroupCommitter(ENGINE)

    async def main() -> tuple[float, StoreResult]:
        pending = asyncio.create_task(store(committer, b"1"))
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await committer.close(timeout=0.2)
        took = time.monotonic() - began
        release.set()  # the database comes back: the waiting session still gets its answer
        return took, await pending

    took, result = asyncio.run(main())
    assert took < 2
    assert result.inbound_id == 1
