"""What the parts of one ``mailbot serve`` process say about themselves, for ``/healthz`` and
``/metrics``.

Each role that runs here gets a :class:`Part`. Long-running tasks are watched through their
asyncio task (one that has ended is stopped, and down); the IMAP reader and the scheduler
report their state as it changes (connected, login refused, unreachable; leader, standby).
Facts that live in the database (how old the oldest waiting message is) are read by
mailbot.facts, not kept here, so every process reports the same ones.

Only the event loop's thread and the threads it starts write here, one attribute at a time; a
reader may see one part a moment before another, never a torn value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mailbot.clock import Clock, utc_now

# States a part can be in. "ok" states keep /healthz at 200.
STARTING = "starting"
RUNNING = "running"
CONNECTED = "connected"
LEADER = "leader"
STANDBY = "standby"
REFUSED = "login refused"
UNREACHABLE = "unreachable"
FAILING = "failing"
STOPPED = "stopped"
OK_STATES = frozenset({RUNNING, CONNECTED, LEADER, STANDBY})


@dataclass
class Part:
    """One role's state in this process."""

    name: str
    clock: Clock = utc_now
    state: str = STARTING
    last_success: datetime | None = None
    task: asyncio.Task[None] | None = None

    def report(self, state: str) -> None:
        self.state = state

    def succeeded(self, state: str = RUNNING) -> None:
        """It just did its job (an IMAP pass, a scheduler check): ``state``, as of now."""
        self.report(state)
        self.last_success = self.clock()

    @property
    def current(self) -> str:
        """The state, or ``stopped`` for a task that ended by itself."""
        if self.task is not None and self.task.done():
            return STOPPED
        return self.state


class Monitor:
    """The parts of this process, by role name (those ``serve`` runs here)."""

    def __init__(self, roles: Iterable[str] = (), *, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.parts = {role: Part(role, clock=clock) for role in roles}
        self.smtp_port: int | None = None  # where this process's gateway listens, once it does

    def __contains__(self, role: str) -> bool:
        return role in self.parts

    def part(self, role: str) -> Part:
        return self.parts[role]

    def watch(self, role: str, task: asyncio.Task[None]) -> None:
        """``task`` runs ``role``; it is running until it ends."""
        part = self.parts[role]
        part.task = task
        if part.state == STARTING and role not in ("imap", "scheduler"):
            part.report(RUNNING)  # these two say for themselves when they are up
