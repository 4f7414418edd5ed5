"""``/healthz``: does each part this process runs work right now? For load balancers and
monitors: ``200`` when every part is up, ``503`` naming the parts that are not.

What is checked, each bounded by a short timeout so a hung dependency fails the probe instead
of hanging it:

* ``database`` (always): it answers ``SELECT 1``; then the queue facts every process shares
  (mailbot.facts) are read and shown under ``waiting``;
* ``smtp``: the gateway of this process answers ``220`` on its port;
* ``worker``: its task runs, and no stored message has waited longer than
  ``MAILBOT_HEALTH_STUCK_SECONDS`` (the worker is not draining);
* ``outbox``: its task runs, the relay is reachable (a Maildir that is, or can be created, a
  writable folder; an SMTP relay that accepts a TCP connection), and no notice has been
  waiting longer than ``MAILBOT_HEALTH_STUCK_SECONDS`` (notices failing); the number of failed
  notices is shown (they need an operator, not a restart, so they do not fail the check);
* ``scheduler``: leader or standby (the leader lock decides); failing when its loop fails;
* ``imap``: connected, with a pass over the folder within the last few rescans; down while the
  server is unreachable or refuses the login, with the time of the last success.

A part this process does not run is not shown. Failures are logged with their detail; the JSON
names each part's state and a short reason only, because the endpoint needs no token and must
not describe the deployment to strangers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from mailbot.config import RelayTarget, Settings
from mailbot.facts import QueueFacts, read_facts
from mailbot.monitor import CONNECTED, OK_STATES, STARTING, Monitor, Part

log = logging.getLogger("mailbot.web")

DATABASE_TIMEOUT_SECONDS = 3.0
RELAY_TIMEOUT_SECONDS = 2.0
SMTP_TIMEOUT_SECONDS = 2.0
# An IMAP reader passes over its folder every MAILBOT_IMAP_RESCAN_SECONDS; this many rescans
# without one (plus a minute for a slow pass) means it is stuck.
IMAP_STALE_RESCANS = 3


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str = ""

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok} if self.ok else {"ok": False, "error": self.reason}


async def check_database(engine: Engine, timeout: float = DATABASE_TIMEOUT_SECONDS) -> Check:
    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        # The driver blocks: run it on a thread so the loop (SMTP, worker, outbox) keeps going.
        await asyncio.wait_for(asyncio.to_thread(probe), timeout)
    except TimeoutError:
        log.warning("healthz: database did not answer within %.1fs", timeout)
        return Check(False, "timeout")
    except Exception as exc:  # any driver error means "not reachable" to a load balancer
        log.warning("healthz: database unreachable: %s", exc)
        return Check(False, "unreachable")
    return Check(True)


async def check_relay(target: RelayTarget, timeout: float = RELAY_TIMEOUT_SECONDS) -> Check:
    if target.kind == "maildir":
        return _check_maildir(target.path)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout
        )
    except TimeoutError:
        log.warning("healthz: relay %s:%s timed out", target.host, target.port)
        return Check(False, "timeout")
    except OSError as exc:
        log.warning("healthz: relay %s:%s unreachable: %s", target.host, target.port, exc)
        return Check(False, "unreachable")
    writer.close()
    # A reset while closing still proves the relay accepted the connection.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Check(True)


def _check_maildir(path: Path | None) -> Check:
    """The Maildir, or the folder it will be created in (on first delivery), is writable."""
    if path is None:
        return Check(False, "no maildir path")
    if path.exists():
        usable = path.is_dir() and os.access(path, os.W_OK | os.X_OK)
    else:
        existing = next((p for p in path.parents if p.exists()), None)
        usable = existing is not None and existing.is_dir() and os.access(existing, os.W_OK)
    if not usable:
        log.warning("healthz: Maildir %s is not a writable folder", path)
        return Check(False, "maildir not writable")
    return Check(True)


async def check_smtp(host: str, port: int, timeout: float = SMTP_TIMEOUT_SECONDS) -> Check:
    """The gateway greets: ``220`` (ready) or ``421`` (all its sessions busy; it is up)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        log.warning("healthz: SMTP gateway %s:%s unreachable: %s", host, port, exc)
        return Check(False, "unreachable")
    try:
        greeting = await asyncio.wait_for(reader.readline(), timeout)
        if greeting.startswith(b"220"):
            writer.write(b"QUIT\r\n")
            with contextlib.suppress(OSError):
                await writer.drain()
    except (TimeoutError, OSError) as exc:
        greeting = b""
        log.warning("healthz: SMTP gateway %s:%s gave no greeting: %s", host, port, exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if greeting[:3] in (b"220", b"421"):
        return Check(True)
    log.warning("healthz: SMTP gateway %s:%s greeted %r", host, port, greeting[:80])
    return Check(False, "no greeting")


@dataclass(frozen=True)
class Health:
    ok: bool
    body: dict[str, Any]


async def check_health(
    engine: Engine, settings: Settings, monitor: Monitor, now: datetime
) -> Health:
    """Every part ``monitor`` knows of, and the database: the ``/healthz`` answer."""
    database = await check_database(engine)
    facts: QueueFacts | None = None
    if database.ok:
        facts = await _read_facts(engine)
    body: dict[str, Any] = {"status": "ok", "database": database.as_json()}
    failing = [] if database.ok and facts is not None else ["database"]
    for name, part in monitor.parts.items():
        shown = await _check_part(name, part, settings, monitor, facts, now)
        if name == "web":
            continue  # answering this request is the proof
        body[name] = shown
        if not shown["ok"]:
            failing.append(name)
    if facts is not None:
        body["waiting"] = facts.as_json(now)
    if failing:
        body["status"] = "unavailable"
        body["failing"] = failing
    return Health(not failing, body)


async def _read_facts(engine: Engine) -> QueueFacts | None:
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(read_facts, engine), DATABASE_TIMEOUT_SECONDS
        )
    except Exception as exc:  # any failure means the database cannot be relied on now
        log.warning("healthz: reading the queues failed: %s", exc)
        return None


async def _check_part(
    name: str,
    part: Part,
    settings: Settings,
    monitor: Monitor,
    facts: QueueFacts | None,
    now: datetime,
) -> dict[str, Any]:
    state = part.current
    # A part still starting (the scheduler before its first election) is not down; an IMAP
    # reader is, until it has connected: mail in the mailbox is not being taken.
    up = state in OK_STATES or (state == STARTING and name != "imap")
    shown: dict[str, Any] = {"ok": up, "state": state}
    if not shown["ok"]:
        shown["error"] = state
    stuck = settings.health_stuck_seconds
    if name == "smtp":
        shown.update(await _smtp(settings, monitor))
    elif name == "worker" and facts is not None:
        waited = facts.waiting_seconds(now)
        if waited is not None and waited > stuck:
            shown.update(ok=False, error=f"not draining: a message has waited {waited:.0f} s")
    elif name == "outbox":
        relay = await check_relay(settings.relay_target)
        shown["relay"] = "reachable" if relay.ok else relay.reason
        if not relay.ok:
            shown.update(ok=False, error=f"relay {relay.reason}")
        if facts is not None:
            shown["failed"] = facts.notices("failed")
            waited = facts.unsent_seconds(now)
            if waited is not None and waited > stuck and shown["ok"]:
                shown.update(ok=False, error=f"notices failing: one has waited {waited:.0f} s")
    elif name == "imap":
        shown["last_success"] = part.last_success.isoformat() if part.last_success else None
        if state == STARTING:
            shown["error"] = "not connected yet"
        stale = IMAP_STALE_RESCANS * settings.imap_rescan_seconds + 60
        last = part.last_success
        if (
            state == CONNECTED
            and last is not None
            and (monitor.clock() - last).total_seconds() > stale
        ):
            shown.update(ok=False, error="no pass over the folder lately")
    if not shown["ok"]:
        log.warning("healthz: %s is down: %s", name, shown.get("error", state))
    return shown


async def _smtp(settings: Settings, monitor: Monitor) -> dict[str, Any]:
    if monitor.smtp_port is None:
        return {"ok": False, "error": "not listening"}
    host = settings.smtp_address.host
    if host in ("0.0.0.0", ""):  # a wildcard listener is reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    answer = await check_smtp(host, monitor.smtp_port)
    return {} if answer.ok else {"ok": False, "error": answer.reason}
