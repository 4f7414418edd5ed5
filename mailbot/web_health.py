"""``/healthz``: can this instance store mail and send notices? For load balancers and monitors.

Two checks, each bounded by a short timeout so a hung dependency makes the probe fail instead of
hang: the database answers ``SELECT 1``, and the relay is reachable (a Maildir that is, or can
be created, a writable folder; an SMTP relay that accepts a TCP connection). Failures are
logged with their detail; the JSON names only the failing part and a short reason, because
the endpoint needs no token and must not describe the deployment to strangers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from mailbot.config import RelayTarget

log = logging.getLogger("mailbot.web")

DATABASE_TIMEOUT_SECONDS = 3.0
RELAY_TIMEOUT_SECONDS = 2.0


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
