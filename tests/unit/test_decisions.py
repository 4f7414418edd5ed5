"""Reading a staff decision: only the first line the sender wrote decides."""

from __future__ import annotations

import pytest

from mailbot.decisions import Action, Decision, read_decision


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("承認", Decision(Action.APPROVE)),
        ("　承認します。\nよろしく", Decision(Action.APPROVE)),
        ("Approve", Decision(Action.APPROVE)),
        ("■承認", Decision(Action.APPROVE)),
        ("承認 利用開始日：2026年12月22日", Decision(Action.APPROVE, "2026年12月22日")),
        ("承認\n利用開始日: R8.12.22", Decision(Action.APPROVE, "R8.12.22")),
        ("approve\nstart date: 2026-12-22", Decision(Action.APPROVE, "2026-12-22")),
        ("却下：IDが誤っています", Decision(Action.REJECT, reason="IDが誤っています")),
        (
            "reject\nwrong office\nplease resend",
            Decision(Action.REJECT, reason="wrong office\nplease resend"),
        ),
        ("取下げ", Decision(Action.WITHDRAW)),
        ("取り下げ 誤送信", Decision(Action.WITHDRAW, reason="誤送信")),
        ("\n\n却下 理由\n-- \n審査 太郎\nTEL 03-0000-0000", Decision(Action.REJECT, reason="理由")),
    ],
)
def test_decisions_people_write(text: str, expected: Decision) -> None:
    assert read_decision(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "OK",
        "承認できません",  # a negation is never a yes
        "承認不可",
        "承認しない方向です",
        "> 承認",
        "2026年11月28日(土) 10:00 mailbot <apply@mailbot.localhost>:\n> 承認",
        "-----Original Message-----\n承認",
        "On Sat, Nov 28, 2026 at 10:00 mailbot <apply@mailbot.localhost> wrote:\n> approve",
        "approval pending",
        "rejection letter",
    ],
)
def test_quoted_or_other_text_is_no_decision(text: str) -> None:
    assert read_decision(text) is None


def test_reject_line_wins_over_quoted_approve() -> None:
    assert read_decision("却下 内容不備\n\n> 承認") == Decision(Action.REJECT, reason="内容不備")
