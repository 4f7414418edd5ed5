"""Group commit for the SMTP gateway: every store waiting at that moment, one transaction.

Each SMTP session hands its message to :meth:`GroupCommitter.store` and waits. One writer
*thread* takes everything queued, stores it with :func:`store_messages` (one transaction, one
fsync), and only then resolves each session's future, so every ``250`` still follows its own
row's commit. Under load the batches grow by themselves: while one batch is being committed,
the next one queues up.

Why a thread of its own rather than a task that hands each batch to ``asyncio.to_thread``:
with a task, picking up the next batch and learning that the last one committed each wait for
a turn of the event loop, and a busy gateway's loop turn is as long as the commit itself. The
sessions then fall into lock step (all wait for the commit while the loop idles, then the loop
serves all while the writer idles). A writer thread starts the next batch the moment the last
one commits, so the database work overlaps the protocol work; the SQLite and PostgreSQL
drivers release the GIL while they write and sync.

A failed batch fails each of its sessions with a StoreError (each client gets ``451`` and
retries); nothing is half-stored, because the batch is one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence

from sqlalchemy import Engine

from mailbot.errors import StoreError
from mailbot.gateway.store import Incoming, StoreResult, store_messages

log = logging.getLogger("mailbot.gateway.group_commit")

# The gateway alone: 420-445/s with a transaction per message, 810-845/s so (bench/gateway.py)
MAX_BATCH = 64
CLOSE_TIMEOUT_SECONDS = 30.0

_Pending = tuple[Incoming, "asyncio.Future[StoreResult]"]
_STOP = None  # put on the queue to end the writer thread


class GroupCommitter:
    """Stores messages for coroutines on any event loop (each future knows its own loop)."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def store(
        self,
        raw: bytes | bytearray,
        *,
        channel: str,
        envelope_from: str | None,
        envelope_to: Sequence[str],
        trace_length: int = 0,
    ) -> StoreResult:
        """Store one message durably (committed when this returns); raises StoreError.

        ``raw`` is stored as it is, not copied: it must not change until this returns. Its
        first ``trace_length`` bytes are the gateway's trace header (see ``Incoming``).
        """
        self._ensure_writer()
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        incoming = Incoming(raw, channel, envelope_from, envelope_to, trace_length)
        self._queue.put((incoming, future))
        return await future

    def _ensure_writer(self) -> None:
        with self._start_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="gateway-group-commit", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            self._commit(batch)
            # Let go of the messages now: waiting for the next one with this batch still in
            # hand would keep up to max_batch messages' bytes alive while the gateway idles.
            del batch

    def _next_batch(self) -> list[_Pending]:
        """Everything queued (at least one, waiting for it), up to max_batch; [] to stop."""
        first = self._queue.get()
        if first is _STOP:
            return []
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # finish this batch, then stop
                break
            batch.append(item)
        return batch

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            results: list[StoreResult | BaseException] = list(
                store_messages(self.engine, [incoming for incoming, _ in batch])
            )
        except Exception as exc:  # the loop boundary: every waiting session gets its 451
            failure = exc if isinstance(exc, StoreError) else StoreError(f"storage failed: {exc}")
            self._answer(batch, [failure] * len(batch))
            return
        except BaseException:
            # The thread is ending (the interpreter is going down): no session may be left
            # waiting for an answer that will never come; the next store starts a new writer.
            self._answer(batch, [StoreError("the gateway's writer stopped")] * len(batch))
            raise
        self._answer(batch, results)

    @staticmethod
    def _answer(batch: list[_Pending], results: list[StoreResult | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[StoreResult], object]]]
        by_loop = {}
        for (_, future), outcome in zip(batch, results, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, outcomes in by_loop.items():
            try:  # one wake-up per loop for the whole batch
                loop.call_soon_threadsafe(_resolve, outcomes)
            except RuntimeError:  # that loop has closed: nobody waits any more
                log.warning("a gateway event loop closed while %d store(s) waited", len(outcomes))

    async def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop the writer once the queued stores are done (after the sessions have ended).

        A writer stuck in the database (a hung server) is given ``timeout`` seconds and then
        left behind: it is a daemon thread, and nobody is owed a 250 by it any more.
        """
        with self._start_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(writer.join, timeout)
            if writer.is_alive():
                log.warning("the gateway's writer did not stop within %.0f s", timeout)


def _resolve(outcomes: list[tuple[asyncio.Future[StoreResult], object]]) -> None:
    for future, outcome in outcomes:
        if future.done():  # a session that was cut off no longer waits
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            assert isinstance(outcome, StoreResult)
            future.set_result(outcome)
