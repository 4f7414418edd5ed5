"""The gateway's per-client caps: what counts as one client (docs/operations.md, "Limits")."""

from __future__ import annotations

import asyncio

from mailbot.gateway.limits import Admission, client_key


def admission(max_sessions_per_client: int = 2) -> Admission:
    return Admission(
        max_sessions=100,
        max_sessions_per_client=max_sessions_per_client,
        max_data=100,
        max_data_per_client=1,
        data_wait_seconds=0,
    )


def test_an_ipv6_client_is_counted_by_its_64_and_an_ipv4_client_by_its_address() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("unknown") == "unknown"


def test_new_ipv6_addresses_from_one_64_do_not_get_new_sessions() -> None:
    gate = admission()
    assert gate.open_session("2001:db8:1:2::1") is None
    assert gate.open_session("2001:db8:1:2::2") is None
    refused = gate.open_session("2001:db8:1:2::3")  # the same host, a third address
    assert refused is not None and "2001:db8:1:2::/64" in refused
    assert "MAILBOT_SMTP_MAX_SESSIONS_PER_CLIENT" in refused
    assert gate.open_session("2001:db8:1:3::1") is None  # the next /64: someone else
    gate.close_session("2001:db8:1:2::1")
    assert gate.open_session("2001:db8:1:2::4") is None  # a freed session frees the /64's turn


def test_ipv4_neighbours_are_different_clients() -> None:
    gate = admission(max_sessions_per_client=1)
    assert gate.open_session("192.0.2.1") is None
    assert gate.open_session("192.0.2.2") is None
    assert gate.open_session("192.0.2.1") is not None


def test_messages_in_data_are_counted_per_64_too() -> None:
    async def run() -> tuple[str | None, str | None, str | None]:
        gate = admission()
        first = await gate.enter_data("2001:db8::a")
        second = await gate.enter_data("2001:db8::b")  # same /64, no wait: 451 at once
        gate.leave_data("2001:db8::a")
        third = await gate.enter_data("2001:db8::c")
        return first, second, third

    first, second, third = asyncio.run(run())
    assert first is None and third is None
    assert second is not None and "MAILBOT_SMTP_MAX_DATA_PER_CLIENT" in second


def test_a_trusted_relay_is_held_to_the_totals_only_whatever_its_64() -> None:
    relay = "2001:db8:ffff::25"
    gate = Admission(
        max_sessions=3,
        max_sessions_per_client=1,
        max_data=3,
        max_data_per_client=1,
        data_wait_seconds=0,
        exempt=lambda client: client == relay,
    )
    assert [gate.open_session(relay) for _ in range(3)] == [None, None, None]
    assert gate.open_session(relay) is not None  # the total
