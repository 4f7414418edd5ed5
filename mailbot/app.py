"""``mailbot serve``: wires the long-running parts together and runs them until a signal.

The parts are roles (``SERVE_ROLES``), all of them by default, or those named by
``serve --only``:

* ``smtp`` — the SMTP gateway (stores and answers);
* ``worker`` — the intake worker (processes stored messages);
* ``outbox`` — the sender (renders queued intents, delivers notices, retries);
* ``scheduler`` — start dates, review reminders and retention, in whichever process holds the
  leader lock (an advisory lock on PostgreSQL, a file lock beside the SQLite database), so any
  number of processes may have the role and exactly one runs it;
* ``web`` — the pages behind the notices' links (an application, an office), the staff
  console under /staff, /healthz and /metrics;
* ``imap`` — the IMAP poller (by default only when ``MAILBOT_IMAP_URL`` is set).

One asyncio loop holds a process's parts. In one process the gateway and the IMAP poller wake
the worker at once, and the worker wakes the outbox; across processes there is no wake-up, and
each finds new rows by polling (``MAILBOT_WORKER_POLL_SECONDS``, the outbox every second).
SIGINT/SIGTERM stop the listeners first, the gateway before the web server (no new mail), then
the worker, the sender and the rest finish their current step.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from db.migrate import upgrade
from mailbot.config import SERVE_ROLES, Settings
from mailbot.errors import ConfigError
from mailbot.gateway.imap import DrainResult, ImapIntake, run_imap
from mailbot.gateway.imap_mailbox import ImapFatalError, Mailbox, parse_imap_url, read_password
from mailbot.gateway.smtp import IntakeHandler, SmtpGateway
from mailbot.gateway.tls import server_tls_context
from mailbot.intake import IntakeContext
from mailbot.keys import ensure_signing_key
from mailbot.logs import configure_logging
from mailbot.memory import return_large_blocks_to_the_os
from mailbot.metrics import observe_smtp_store
from mailbot.monitor import CONNECTED, REFUSED, RUNNING, UNREACHABLE, Monitor, Part
from mailbot.notify import intent_renderer
from mailbot.outbox import run_outbox
from mailbot.runtime import Runtime
from mailbot.web import start_web
from mailbot.worker import run_worker
from scheduler.config import schedule_config
from scheduler.service import run_scheduler

log = logging.getLogger("mailbot")


def serve(rt: Runtime, only: Sequence[str] | None = None) -> None:
    """Run the roles ``only`` names (all when None) until SIGINT or SIGTERM."""
    settings = rt.settings
    configure_logging(settings.log_level, settings.log_format, settings.zone)
    roles = roles_to_run(only, rt.settings)
    return_large_blocks_to_the_os()  # a burst of large messages must not keep their memory
    if "smtp" in roles:
        # A certificate problem stops start-up here, before the database is touched.
        server_tls_context(rt.settings)
    if "imap" in roles:
        # So does a mailbox that cannot be read at all (no password, a bad URL).
        parse_imap_url(settings.imap_url)
        read_password(settings)
    upgrade(rt.engine)
    ensure_signing_key(rt.engine, rt.settings)  # the first key, shared by every process
    asyncio.run(run_services(rt, roles))


# --- which roles ---------------------------------------------------------------------------------


def parse_roles(value: str) -> tuple[str, ...]:
    """``--only smtp,worker`` → the roles named, in ``SERVE_ROLES`` order."""
    named = {part.strip() for part in value.split(",") if part.strip()}
    valid = ", ".join(SERVE_ROLES)
    unknown = sorted(named.difference(SERVE_ROLES))
    if unknown:
        raise ConfigError(
            f"--only: unknown role {', '.join(map(repr, unknown))}; the roles are {valid}"
        )
    if not named:
        raise ConfigError(f"--only names no role; give one or more of {valid}, comma-separated")
    return tuple(role for role in SERVE_ROLES if role in named)


def roles_to_run(only: Sequence[str] | None, settings: Settings) -> tuple[str, ...]:
    """The roles this process runs: ``only``, or every role (IMAP only when configured)."""
    if only is None:
        return tuple(role for role in SERVE_ROLES if role != "imap" or settings.imap_url)
    if "imap" in only and not settings.imap_url:
        raise ConfigError(
            "--only imap needs MAILBOT_IMAP_URL, the mailbox to read "
            "(e.g. imaps://apply%40example.jp@imap.example.jp/INBOX)"
        )
    return tuple(only)


# --- how each role starts ------------------------------------------------------------------------


@dataclass
class Shared:
    """What the parts of one process share."""

    rt: Runtime
    stop: asyncio.Event
    monitor: Monitor  # what /healthz and /metrics say about this process's parts
    # A message was stored: the worker, if in this process, looks at once.
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    # Notices were committed: the outbox, if in this process, looks at once.
    notices: asyncio.Event = field(default_factory=asyncio.Event)


class Listener(Protocol):
    async def stop(self) -> None: ...


async def _start_smtp(shared: Shared) -> Listener:
    rt = shared.rt
    gateway = SmtpGateway(rt.engine, rt.settings, on_stored=shared.stored.set)
    _time_stores(gateway.handler)
    await gateway.start()
    shared.monitor.smtp_port = gateway.port
    shared.monitor.part("smtp").report(RUNNING)
    return gateway


def _time_stores(handler: IntakeHandler) -> None:
    """Observe how long each DATA takes to be answered (``mailbot_smtp_store_seconds``): the
    handler's store is what commits the bytes and returns the 250 (or 451)."""
    store = handler.store

    async def timed(*args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        reply = await store(*args, **kwargs)
        observe_smtp_store(reply, time.perf_counter() - started)
        return reply

    handler.store = timed  # type: ignore[method-assign]


async def _start_web(shared: Shared) -> Listener:
    server = await start_web(shared.rt.engine, shared.rt.settings, monitor=shared.monitor)
    shared.monitor.part("web").report(RUNNING)
    return server


def _worker(shared: Shared) -> Coroutine[Any, Any, None]:
    rt = shared.rt
    ctx = IntakeContext(settings=rt.settings, calendar=rt.calendar)
    return run_worker(rt.engine, ctx, shared.stop, shared.stored, processed=shared.notices)


def _outbox(shared: Shared) -> Coroutine[Any, Any, None]:
    settings = shared.rt.settings
    render = intent_renderer(settings)  # the notices render the intents the outbox claims
    # Woken by the worker for latency, not throughput (bench/intake.py (c) 86 requests/s either
    # way): a notice leaves as soon as it is committed, not at the outbox's next 1 s poll.
    return run_outbox(shared.rt.engine, settings, shared.stop, render=render, wake=shared.notices)


def _scheduler(shared: Shared) -> Coroutine[Any, Any, None]:
    rt = shared.rt
    config = schedule_config(rt.settings)
    return run_scheduler(
        rt.engine,
        rt.settings,
        shared.stop,
        config=config,
        calendar=rt.calendar,
        report=shared.monitor.part("scheduler").succeeded,
    )


def _imap(shared: Shared) -> Coroutine[Any, Any, None]:
    rt = shared.rt
    intake = WatchedImapIntake(rt.engine, rt.settings, part=shared.monitor.part("imap"))
    return run_imap(rt.engine, rt.settings, shared.stop, shared.stored, intake=intake)


class WatchedImapIntake(ImapIntake):
    """The IMAP intake, telling its part how the mailbox answers: connected (and each pass
    over the folder), login refused (or another fault an operator must fix), unreachable."""

    def __init__(self, engine: Engine, settings: Settings, *, part: Part) -> None:
        super().__init__(engine, settings)
        self.part = part

    def connect(self) -> Mailbox:
        try:
            mailbox = super().connect()
        except ImapFatalError:
            self.part.report(REFUSED)
            raise
        except Exception:
            self.part.report(UNREACHABLE)
            raise
        self.part.succeeded(CONNECTED)
        return mailbox

    def drain(
        self, mailbox: Mailbox, should_stop: Callable[[], bool] = lambda: False
    ) -> DrainResult:
        try:
            result = super().drain(mailbox, should_stop)
        except Exception:
            self.part.report(UNREACHABLE)
            raise
        self.part.succeeded(CONNECTED)
        return result


# Listeners bind when started (a busy port stops start-up) and are stopped first, in this order:
# the gateway before the web server, so no new mail arrives while the rest finishes.
LISTENERS: dict[str, Callable[[Shared], Awaitable[Listener]]] = {
    "smtp": _start_smtp,
    "web": _start_web,
}
# Tasks run until ``stop`` is set, then finish their current step.
TASKS: dict[str, Callable[[Shared], Coroutine[Any, Any, None]]] = {
    "worker": _worker,
    "outbox": _outbox,
    "scheduler": _scheduler,
    "imap": _imap,
}


async def run_services(
    rt: Runtime, roles: Sequence[str] | None = None, *, stop: asyncio.Event | None = None
) -> None:
    """Run ``roles`` (default: every role that applies) until ``stop`` is set or a signal."""
    roles = roles_to_run(roles, rt.settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shared = Shared(rt, stop, Monitor(roles))
    listeners: list[Listener] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for role in (role for role in LISTENERS if role in roles):
            listeners.append(await LISTENERS[role](shared))
        for role in (role for role in TASKS if role in roles):
            task = asyncio.create_task(TASKS[role](shared), name=role)
            shared.monitor.watch(role, task)
            tasks.append(task)
        log.info("mailbot running: %s", _summary(rt, roles))
        await stop.wait()
    finally:
        for listener in listeners:
            await listener.stop()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("mailbot stopped")


def _summary(rt: Runtime, roles: Sequence[str]) -> str:
    settings = rt.settings
    parts = [
        f"roles {', '.join(roles)}",
        f"database {rt.engine.url.render_as_string(hide_password=True)}",
    ]
    if "smtp" in roles:
        parts.append(f"SMTP on {settings.smtp_address} for {settings.intake_address}")
    if "outbox" in roles:
        relay = settings.relay_target
        parts.append(f"relay {relay.path or f'{relay.host}:{relay.port}'}")
    return "; ".join(parts)
