"""How many sessions and messages the SMTP gateway takes at once (bounded memory).

A message is held in memory from its first DATA line until it is committed, so the number of
messages in DATA at once, not the number of connections, is what bounds the gateway's memory:
``smtp_max_data`` messages of at most ``max_message_bytes`` each. Sessions cost little while
they are not in DATA, but each is a socket and a task, so they have a cap too.

Beyond a cap the answer is temporary, never a refusal: ``421`` at connect (too many sessions),
``451`` to DATA (too many messages in DATA) after waiting ``smtp_data_wait_seconds`` for a slot.
The sending server keeps the message and retries, as it does for any ``4xx``.

The per-client caps stop one address from taking every slot. An IPv6 client is counted by its
/64 network, the block one subscriber or one host is given: otherwise a single machine takes a
new address for every connection and no per-client cap ever holds. Trusted relays (the MTA in
front, which funnels everyone's mail through one address) are held to the totals only.

Everything here runs on the gateway's event loop thread: plain counters, no locks.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from mailbot.config import Settings

UNKNOWN_CLIENT = "unknown"


def client_address(peer: Any) -> str:
    """The client's IP address from a transport's ``peername`` (IPv4-mapped IPv6 as IPv4)."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(host, str) or not host:
        return UNKNOWN_CLIENT
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_key(client: str) -> str:
    """What the per-client caps count ``client`` (from :func:`client_address`) as: an IPv4
    address itself, an IPv6 address by its /64 network."""
    if ":" not in client:  # IPv4 or UNKNOWN_CLIENT: as it is, with nothing to parse
        return client
    try:
        address = ipaddress.IPv6Address(client)
    except ValueError:
        return client
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def is_trusted_relay(client: str, settings: Settings) -> bool:
    """True when ``client`` (from :func:`client_address`) is in MAILBOT_TRUSTED_RELAYS."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in settings.trusted_relay_networks)


class Admission:
    """The gateway's counters: sessions and messages in DATA, in all and per client."""

    def __init__(
        self,
        *,
        max_sessions: int,
        max_sessions_per_client: int,
        max_data: int,
        max_data_per_client: int,
        data_wait_seconds: float,
        exempt: Callable[[str], bool] = lambda client: False,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.max_data = max_data
        self.max_data_per_client = max_data_per_client
        self.data_wait_seconds = data_wait_seconds
        self.exempt = exempt
        self.sessions = 0
        self.data = 0
        self._sessions_of: Counter[str] = Counter()
        self._data_of: Counter[str] = Counter()
        # Sessions waiting for a DATA slot, woken (all, oldest first) whenever one frees.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(
            max_sessions=settings.smtp_max_sessions,
            max_sessions_per_client=settings.smtp_max_sessions_per_client,
            max_data=settings.smtp_max_data,
            max_data_per_client=settings.smtp_max_data_per_client,
            data_wait_seconds=settings.smtp_data_wait_seconds,
            exempt=lambda client: is_trusted_relay(client, settings),
        )

    # Sessions ---------------------------------------------------------------------------------
    def open_session(self, client: str) -> str | None:
        """Count a new connection; or say which cap it is over (and count nothing)."""
        key = client_key(client)
        if self.sessions >= self.max_sessions:
            return f"{self.sessions} sessions open (MAILBOT_SMTP_MAX_SESSIONS)"
        if not self.exempt(client) and self._sessions_of[key] >= self.max_sessions_per_client:
            return (
                f"{self._sessions_of[key]} sessions open from {key} "
                "(MAILBOT_SMTP_MAX_SESSIONS_PER_CLIENT)"
            )
        self.sessions += 1
        self._sessions_of[key] += 1
        return None

    def close_session(self, client: str) -> None:
        self.sessions -= 1
        _decrement(self._sessions_of, client_key(client))

    # Messages in DATA -------------------------------------------------------------------------
    async def enter_data(self, client: str) -> str | None:
        """Take a DATA slot, waiting up to ``data_wait_seconds`` for one; None once taken, else
        which cap is full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.data_wait_seconds
        key = client_key(client)
        while (full := self._data_full(client, key)) is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return full
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait((waiter,), timeout=remaining)
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.data += 1
        self._data_of[key] += 1
        return None

    def leave_data(self, client: str) -> None:
        self.data -= 1
        _decrement(self._data_of, client_key(client))
        while self._waiters:  # each re-checks the caps in turn
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _data_full(self, client: str, key: str) -> str | None:
        if self.data >= self.max_data:
            return f"{self.data} messages in DATA (MAILBOT_SMTP_MAX_DATA)"
        if not self.exempt(client) and self._data_of[key] >= self.max_data_per_client:
            return (
                f"{self._data_of[key]} messages in DATA from {key} "
                "(MAILBOT_SMTP_MAX_DATA_PER_CLIENT)"
            )
        return None


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
