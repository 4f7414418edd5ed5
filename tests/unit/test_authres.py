"""Which Authentication-Results count, by the way the message came in (pure code; the same over
real SMTP in tests/integration/test_authres_smtp.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbot.authres import authenticated, trusted_headers
from mailbot.config import parse_networks
from mailbot.gateway.trace import received_header

TRUSTED = "mx.example.jp"
PASS = ("Authentication-Results", f"{TRUSTED}; dkim=pass header.d=corp.jp")
RELAY_RECEIVED = ("Received", "from outside.example (outside [198.51.100.7]) by mx.example.jp")
RELAYS = parse_networks("127.0.0.1, 10.0.0.0/8")
WHEN = datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=9)))


def gateway_received(client: str) -> tuple[str, str]:
    text = received_header(
        helo="mx.example.jp",
        client=client,
        by="mailbot.example.jp",
        esmtp=True,
        tls=False,
        trace_id="0123abcd",
        when=WHEN,
    ).decode()
    name, _, value = text.partition(":")
    return name, value.strip()


def smtp_ok(headers: list[tuple[str, str]]) -> bool:
    return authenticated(headers, TRUSTED, "corp.jp", channel="smtp", trusted_relays=RELAYS)


def test_smtp_a_trusted_relays_results_count() -> None:
    assert smtp_ok([gateway_received("127.0.0.1"), PASS, RELAY_RECEIVED])
    assert smtp_ok([gateway_received("10.1.2.3"), PASS, RELAY_RECEIVED])  # a network


def test_smtp_a_direct_sender_first_line_forgery_does_not_count() -> None:
    # Issue 13: the sender connects to the gateway itself and writes the header on top.
    assert not smtp_ok([gateway_received("203.0.113.9"), PASS, ("From", "staff@corp.jp")])


def test_smtp_nothing_counts_without_trusted_relays() -> None:
    headers = [gateway_received("127.0.0.1"), PASS, RELAY_RECEIVED]
    assert not authenticated(headers, TRUSTED, "corp.jp", channel="smtp")


def test_smtp_results_below_the_relays_received_are_the_senders() -> None:
    assert not smtp_ok([gateway_received("127.0.0.1"), RELAY_RECEIVED, PASS])


@pytest.mark.parametrize(
    "top",
    [
        [PASS, gateway_received("127.0.0.1"), RELAY_RECEIVED],  # not the gateway's on top
        [("Received", "from x ([127.0.0.1]) by mailbot.example.jp (Postfix) with ESMTP id 1;")],
        [],
    ],
)
def test_smtp_without_the_gateways_received_on_top_nothing_counts(
    top: list[tuple[str, str]],
) -> None:
    assert not smtp_ok([*top, PASS, RELAY_RECEIVED])


def test_pipe_and_imap_count_the_results_above_the_first_received() -> None:
    for channel in ("pipe", "imap"):
        assert authenticated([PASS, RELAY_RECEIVED], TRUSTED, "corp.jp", channel=channel)
        assert not authenticated([RELAY_RECEIVED, PASS], TRUSTED, "corp.jp", channel=channel)


def test_only_the_trusted_authserv_id_and_a_pass_for_the_from_domain_count() -> None:
    def ok(value: str) -> bool:
        headers = [("Authentication-Results", value), RELAY_RECEIVED]
        return authenticated(headers, TRUSTED, "corp.jp", channel="pipe")

    assert ok(f"{TRUSTED}; dmarc=pass (p=reject) header.from=corp.jp")
    assert ok("MX.Example.JP (comment); dkim=pass header.d=CORP.JP.")
    assert not ok("evil.example; dkim=pass header.d=corp.jp")
    assert not ok(f"{TRUSTED}; dkim=fail header.d=corp.jp")
    assert not ok(f"{TRUSTED}; dkim=pass header.d=other.jp")
    assert not ok(f"{TRUSTED}; spf=pass smtp.mailfrom=corp.jp")


@pytest.mark.parametrize("value", ["", ";", "(only a comment)", "; dkim=pass header.d=corp.jp"])
def test_malformed_headers_count_as_nothing_and_never_raise(value: str) -> None:
    headers = [("Authentication-Results", value), RELAY_RECEIVED]
    assert trusted_headers(headers, TRUSTED, channel="pipe") == []
