"""``mailbot serve``: wires the long-running parts together and runs them until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

from db.migrate import upgrade
from mailbot.runtime import Runtime

log = logging.getLogger("mailbot")


def serve(rt: Runtime) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    upgrade(rt.engine)
    asyncio.run(_serve(rt))


async def _serve(rt: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("mailbot started (database %s)", rt.engine.url.render_as_string(hide_password=True))
    await stop.wait()
    log.info("mailbot stopped")
