"""A reply's envelope sender against its From: rewriting on the way is undone, another mailbox
is not the same (pure code; over real SMTP in tests/integration/test_authres_smtp.py)."""

from __future__ import annotations

import pytest

from mailbot.return_path import envelope_agrees, sender_behind

STAFF = "staff@corp.jp"


@pytest.mark.parametrize(
    "envelope",
    [
        "staff@corp.jp",
        "<staff@corp.jp>",
        "Staff@CORP.JP",
        "staff+bounces@corp.jp",
        "prvs=1234abcd=staff@corp.jp",  # BATV
        "btv1==0123456789==staff@corp.jp",
        "SRS0=HHH1=TT=corp.jp=staff@forwarder.example",  # a forwarder's SRS
        "SRS0+hash=Ab=Corp.JP=staff@forwarder.example",
        "SRS1=HHH2=first.example==HHH1=TT=corp.jp=staff@second.example",
        "fwd+SRS=HHH1=TT=corp.jp=staff@forwarder.example",  # Microsoft 365
        None,  # IMAP: no envelope
    ],
)
def test_the_staff_members_own_return_path_in_any_disguise_agrees(envelope: str | None) -> None:
    assert envelope_agrees(envelope, STAFF)


@pytest.mark.parametrize(
    "envelope",
    [
        "mallory@attacker.example",
        "staff@corp.jp.attacker.example",
        "bounces-123@mailer.example",
        "SRS0=HHH1=TT=attacker.example=staff@forwarder.example",
        "prvs=1234abcd=other@corp.jp",
        "",
        "<>",
    ],
)
def test_another_mailbox_or_the_null_sender_does_not(envelope: str) -> None:
    assert not envelope_agrees(envelope, STAFF)


def test_sender_behind_undoes_srs_and_batv_only() -> None:
    assert sender_behind("SRS0=x=y=corp.jp=staff@fwd.example") == "staff@corp.jp"
    assert sender_behind("prvs=1=staff@corp.jp") == "staff@corp.jp"
    assert sender_behind("plain=equals@corp.jp") == "plain=equals@corp.jp"
    assert sender_behind("not an address") == "not an address"
