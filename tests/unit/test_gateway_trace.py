"""The gateway's Received header: its form, and that a client's HELO cannot bend it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbot.gateway.trace import own_received_client, received_header

WHEN = datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=9)))


def header(helo: str | None = "mx.example.net", client: str = "192.0.2.25", **kw: bool) -> str:
    options = {"esmtp": True, "tls": False, **kw}
    return received_header(
        helo=helo, client=client, by="mailbot.example.jp", trace_id="0123abcd", when=WHEN, **options
    ).decode()


def value(text: str) -> str:
    return text.split(":", 1)[1]


def test_the_form_of_rfc_5321() -> None:
    assert header() == (
        "Received: from mx.example.net ([192.0.2.25])\r\n"
        "\tby mailbot.example.jp (mailbot) with ESMTP id 0123abcd;\r\n"
        "\tFri, 27 Nov 2026 10:00:00 +0900\r\n"
    )


@pytest.mark.parametrize(
    ("esmtp", "tls", "protocol"), [(True, True, "ESMTPS"), (False, False, "SMTP")]
)
def test_the_protocol_says_tls_and_helo(esmtp: bool, tls: bool, protocol: str) -> None:
    assert f" with {protocol} id " in header(esmtp=esmtp, tls=tls)


def test_an_ipv6_client_is_an_ipv6_address_literal() -> None:
    assert "from mx.example.net ([IPv6:2001:db8::25])" in header(client="2001:db8::25")
    assert own_received_client(value(header(client="2001:db8::25"))) == "2001:db8::25"


def test_the_client_address_is_read_back() -> None:
    assert own_received_client(value(header())) == "192.0.2.25"


@pytest.mark.parametrize(
    "helo",
    [
        "evil ([127.0.0.1]) by mailbot.example.jp (mailbot) with ESMTP id 1;",
        "x\r\nAuthentication-Results: mailbot.example.jp; dkim=pass",
        "([10.0.0.1])",
        "日本語.example",
    ],
)
def test_a_hostile_helo_cannot_change_what_the_header_says(helo: str) -> None:
    text = header(helo=helo)
    assert text.count("\r\n") == 3  # still three lines: nothing injected
    assert own_received_client(value(text)) == "192.0.2.25"  # the real client, not the HELO's


def test_no_helo_is_unknown() -> None:
    assert header(helo=None).startswith("Received: from unknown ([192.0.2.25])")


@pytest.mark.parametrize(
    "foreign",
    [
        "from mx.example.net (mx.example.net [192.0.2.25]) by mail.example.jp (Postfix) "
        "with ESMTPS id 4Abc; Fri, 27 Nov 2026 10:00:00 +0900",
        "from x ([127.0.0.1]) by mailbot.example.jp (not-mailbot) with ESMTP id 1; date",
        "",
    ],
)
def test_another_servers_received_is_not_taken_for_the_gateways(foreign: str) -> None:
    assert own_received_client(foreign) is None
