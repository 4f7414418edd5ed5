"""mailbot's own addresses: which recipients the gateway accepts, and the tags it reads."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

import pytest

from mailbot.addresses import is_own_address, reply_tag, split_address, tagged_address
from mailbot.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path, intake_address="apply@mailbot.example.jp")


@pytest.mark.parametrize(
    "address",
    [
        "apply@mailbot.example.jp",
        "Apply+T123@MAILBOT.Example.JP",
        '"a b"@x.jp',
        "申込 <apply@x.jp>",
        "<apply@x.jp>",
        "a(comment)@x.jp",
        "a@b@c",
        "a@x.jp, b@y.jp",
        "",
        "no-at-sign",
    ],
)
def test_split_address_reads_every_form_as_the_standard_parser_does(address: str) -> None:
    local, _, domain = parseaddr(address)[1].rpartition("@")
    assert split_address(address) == (local, domain.lower())


@pytest.mark.parametrize(
    ("address", "own"),
    [
        ("apply@mailbot.example.jp", True),
        ("APPLY@Mailbot.Example.JP", True),
        ("apply+t0123456789abcdef@mailbot.example.jp", True),
        ("apply@elsewhere.example.jp", False),
        ("applyx@mailbot.example.jp", False),
        ("postmaster@mailbot.example.jp", False),
        ("apply@mailbot.example.jp@relay.example.com", False),
        ("", False),
    ],
)
def test_only_the_intake_address_and_its_tagged_forms_are_ours(
    settings: Settings, address: str, own: bool
) -> None:
    assert is_own_address(address, settings) is own


def test_a_tagged_address_round_trips_its_tag(settings: Settings) -> None:
    address = tagged_address(settings, "aTOKEN")
    assert address == "apply+aTOKEN@mailbot.example.jp"
    assert reply_tag(address) == "aTOKEN"
    assert reply_tag("apply@mailbot.example.jp") is None
