"""Group commit for the SMTP gateway: every store waiting at that moment, one transaction.

Each SMTP session hands its message to :meth:`GroupCommitter.store` and waits. One writer task
takes everything queued, stores it with :func:`store_messages` (one transaction, one fsync) in
a worker thread, and only then resolves each session's future, so every ``250`` still follows
its own row's commit. Under load the batches grow by themselves: while one batch is being
committed, the next one queues up. A failed batch fails each of its sessions with a
StoreError (each client gets ``451`` and retries); nothing is half-stored, because the batch
is one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy import Engine

from mailbot.errors import StoreError
from mailbot.gateway.store import Incoming, StoreResult, store_messages

log = logging.getLogger("mailbot.gateway.group_commit")

MAX_BATCH = 64

_Pending = tuple[Incoming, "asyncio.Future[StoreResult]"]


class GroupCommitter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def store(
        self, raw: bytes, *, channel: str, envelope_from: str | None, envelope_to: Sequence[str]
    ) -> StoreResult:
        """Store one message durably (committed when this returns); raises StoreError."""
        if self._queue is None or self._writer is None or self._writer.done():
            # Created lazily on the loop that serves the sessions.
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._write_loop(self._queue), name="group-commit")
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((Incoming(raw, channel, envelope_from, envelope_to), future))
        return await future

    async def _write_loop(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await asyncio.to_thread(store_messages, self.engine, [i for i, _ in batch])
        except Exception as exc:  # the loop boundary: every waiting session gets its 451
            failure = exc if isinstance(exc, StoreError) else StoreError(f"storage failed: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a session that was cut off no longer waits
                future.set_result(result)

    async def close(self) -> None:
        """Stop the writer once nothing waits (called after the sessions have ended)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
