"""``mailbot serve``: wires the long-running parts together and runs them until a signal.

One asyncio loop holds them all: the SMTP gateway (stores and answers), the intake worker
(processes stored messages), the outbox sender (delivers rendered notices) and the web server
(the page behind the link in the notices, and /healthz), the scheduler (start dates, review
reminders; on PostgreSQL only in the process that holds the leader lock), and the IMAP poller
when a mailbox is configured. SIGINT/SIGTERM
stop the gateway first (no new mail), then the worker and the sender finish their current step.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from db.migrate import upgrade
from mailbot.gateway.imap import run_imap
from mailbot.gateway.smtp import SmtpGateway
from mailbot.intake import IntakeContext
from mailbot.outbox import run_outbox
from mailbot.runtime import Runtime
from mailbot.web import start_web
from mailbot.worker import run_worker
from scheduler.config import schedule_config
from scheduler.service import run_scheduler

log = logging.getLogger("mailbot")


def serve(rt: Runtime) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs every SMTP command at INFO; keep its warnings, not the chatter.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every sweep at INFO
    upgrade(rt.engine)
    asyncio.run(run_services(rt))


async def run_services(rt: Runtime, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    wake = asyncio.Event()  # a message was stored: the worker looks at once
    notices = asyncio.Event()  # notices were committed: the outbox looks at once
    gateway = SmtpGateway(rt.engine, rt.settings, on_stored=wake.set)
    await gateway.start()
    web = await start_web(rt.engine, rt.settings)  # binds now: a busy port stops start-up
    ctx = IntakeContext(settings=rt.settings, calendar=rt.calendar)
    tasks = [
        asyncio.create_task(
            run_worker(rt.engine, ctx, stop, wake, processed=notices), name="intake-worker"
        ),
        asyncio.create_task(run_outbox(rt.engine, rt.settings, stop, wake=notices), name="outbox"),
    ]
    tasks.append(
        asyncio.create_task(
            run_scheduler(
                rt.engine,
                rt.settings,
                stop,
                config=schedule_config(rt.settings),
                calendar=rt.calendar,
            ),
            name="scheduler",
        )
    )
    if rt.settings.imap_url:
        tasks.append(
            asyncio.create_task(run_imap(rt.engine, rt.settings, stop, wake), name="imap-intake")
        )
    log.info(
        "mailbot running: SMTP on %s for %s, database %s, relay %s",
        rt.settings.smtp_address,
        rt.settings.intake_address,
        rt.engine.url.render_as_string(hide_password=True),
        rt.settings.relay_target.path
        or f"{rt.settings.relay_target.host}:{rt.settings.relay_target.port}",
    )
    try:
        await stop.wait()
    finally:
        await gateway.stop()
        await web.stop()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("mailbot stopped")
