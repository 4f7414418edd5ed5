"""Reading a staff decision: only the first line the sender wrote decides."""

from __future__ import annotations

import pytest

from mailbot.review.commands import Action, Decision, read_decision


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


# --- cancelling an approved application (a reply to the notice that the approval took effect) --


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("取消 申込者から電話で依頼がありました", "申込者から電話で依頼がありました"),
        ("取消：申込者から依頼", "申込者から依頼"),
        ("取消し、申込者の依頼", "申込者の依頼"),
        ("取り消し\n申込者から依頼がありました", "申込者から依頼がありました"),
        ("取り消してください。\n理由：事業所の統合が延期", "事業所の統合が延期"),
        ("取消します\n\n理由\n誤って承認しました", "誤って承認しました"),
        ("取消 理由は申込者からの依頼です", "理由は申込者からの依頼です"),
        ("取消理由：重複した申込です", "重複した申込です"),
        ("キャンセル 重複", "重複"),
        ("キャンセルをお願いします\n申込者の依頼", "申込者の依頼"),
        ("ｷｬﾝｾﾙ 重複", "重複"),  # half-width katakana
        ("　■取消　重複", "重複"),  # full-width space and decoration
        ("ｃａｎｃｅｌ：ａｐｐｌｉｃａｎｔ　ａｓｋｅｄ", "applicant asked"),  # full-width
        ("Cancel: the applicant asked", "the applicant asked"),
        ("CANCEL\nreason: duplicate", "duplicate"),
        ("cancelled - duplicate", "duplicate"),
        ("取消\n重複です\n-- \n審査 太郎\nTEL 03-0000-0000", "重複です"),
        (
            "取消 重複\n\n2026年11月27日(金) 10:05 mailbot <apply@mailbot.localhost>:\n> 取消",
            "重複",
        ),
    ],
)
def test_cancel_commands_people_write(text: str, reason: str) -> None:
    assert read_decision(text) == Decision(Action.CANCEL, reason=reason)


@pytest.mark.parametrize("text", ["取消", "キャンセル", "cancel", "取り消します。", "取消："])
def test_cancel_without_a_reason_is_still_a_cancel(text: str) -> None:
    # Read as a cancel with no reason, so that the staff member is asked for one.
    assert read_decision(text) == Decision(Action.CANCEL)


@pytest.mark.parametrize(
    "text",
    [
        "取消しません",  # a negation is never a cancel
        "取り消さないでください",
        "キャンセル不可",
        "キャンセル待ち",
        "取消済みです",
        "cancellation pending",
        "please cancel",
        "> 取消 重複",
        "-----Original Message-----\n取消 重複",
        "On Sat, Nov 28, 2026 at 10:00 mailbot <apply@mailbot.localhost> wrote:\n> cancel dup",
    ],
)
def test_no_cancel_in_other_or_quoted_text(text: str) -> None:
    assert read_decision(text) is None
