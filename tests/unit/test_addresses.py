"""mailbot's own addresses: which recipients the gateway accepts, and the tags it reads."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

import pytest

from mailbot.addresses import (
    is_null_sender,
    is_own_address,
    mailbox_key,
    reply_tag,
    split_address,
    tagged_address,
)
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
    address = tagged_address(settings, "at0ken")
    assert address == "apply+at0ken@mailbot.example.jp"
    assert reply_tag(address) == "at0ken"
    assert reply_tag("apply@mailbot.example.jp") is None


@pytest.mark.parametrize(
    "address",
    [
        "apply+tabc234@mailbot.example.jp",
        "apply+TABC234@mailbot.example.jp",
        "Apply+Tabc234@MAILBOT.EXAMPLE.JP",
        "申込 <APPLY+TABC234@Mailbot.Example.JP>",
    ],
)
def test_a_tag_is_read_in_any_case(settings: Settings, address: str) -> None:
    # Mail systems fold case; mailbot hands out lower-case tags only.
    assert is_own_address(address, settings)
    assert reply_tag(address) == "tabc234"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("mallory@example.net", "mallory@example.net"),
        ("Mallory+1@Example.NET", "mallory@example.net"),
        ("MALLORY+bounce+x@EXAMPLE.net", "mallory@example.net"),
        ("Mallory <mallory+news@example.net>", "mallory@example.net"),
        ("+only-a-tag@example.net", "+only-a-tag@example.net"),
    ],
)
def test_the_mailbox_key_drops_the_tag_and_folds_the_case(address: str, key: str) -> None:
    assert mailbox_key(address) == key


@pytest.mark.parametrize(("address", "null"), [("", True), ("<>", True), (" <> ", True)])
def test_the_null_sender(address: str, null: bool) -> None:
    assert is_null_sender(address) is null
    assert not is_null_sender(None)  # unknown (IMAP) is not null
    assert not is_null_sender("a@b.jp")
