"""Reading a decision out of a reply: the first line the sender wrote decides.

``承認`` / ``approve`` (optionally with ``利用開始日：DATE`` on that line or the next ones),
``却下`` / ``reject`` followed by the reason, ``取下げ`` / ``withdraw``, and ``取消`` /
``取り消し`` / ``キャンセル`` / ``cancel`` followed by the reason (on that line or the next ones,
an optional ``理由：`` label dropped). Full-width and half-width forms read the same (NFKC).
Quoted text (``>``
lines, "-----Original Message-----", "On … wrote:", Japanese reply headers) never counts:
:func:`mailbot.quoting.new_lines` removes it before anything is read.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from mailbot.quoting import new_lines


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    CANCEL = "cancel"  # an approved application, before its start date


@dataclass(frozen=True)
class Decision:
    action: Action
    start_date_text: str | None = None  # as typed; parsed (and refused if bad) by the caller
    reason: str = ""


_KEYWORDS: tuple[tuple[Action, re.Pattern[str]], ...] = (
    (Action.APPROVE, re.compile(r"^(?:承認|approved?)(?![a-z])", re.IGNORECASE)),
    (Action.REJECT, re.compile(r"^(?:却下|reject(?:ed)?)(?![a-z])", re.IGNORECASE)),
    (
        Action.WITHDRAW,
        re.compile(r"^(?:取り?下げ|取下|withdraw(?:n)?)(?![a-z])", re.IGNORECASE),
    ),
    (
        Action.CANCEL,
        # The keyword, an optional polite ending, then a separator or the end of the line:
        # cancelling is destructive, so "取消しません", "キャンセル不可", "取消済み" and the like
        # are no command (unlike a reject, whose reason may follow without a separator).
        re.compile(
            r"^(?:取り?消|キャンセル|cancel(?:l?ed)?(?![a-z]))"
            r"(?:し(?:ます|てください|て下さい)?|す|する|の?理由"
            r"|を?(?:お願い(?:します|いたします|致します)?|依頼します|希望します|いたします|致します|します))?"
            r"(?=$|[\s:、,。.!(「-])",  # matched after NFKC: "：" is ":", "－" is "-"
            re.IGNORECASE,
        ),
    ),
)
_START_DATE = re.compile(
    r"(?:利用開始日|開始日|start\s*date)\s*[:：]?\s*(?P<date>.+)$", re.IGNORECASE
)
# What may follow 承認 on its line: a polite ending, punctuation, and the start date.
_APPROVE_TAIL = re.compile(
    r"^(?:します|いたします|致します|する|です|でお願いします)?[。.!！\s]*"
    r"(?:(?:利用開始日|開始日|start\s*date).*)?$",
    re.IGNORECASE,
)
# "理由：…", or "理由" alone on its line above the reason: a label, not part of the reason.
_REASON_LABEL = re.compile(
    r"^(?:(?:取り?消し?の?)?理由|reason)[ \t　]*(?:[:：]|\n)\s*", re.IGNORECASE
)
_DECORATION = re.compile(r"^[\s■□●・*＊【\[]+")
_LEADING_SEPARATORS = re.compile(r"^[\s:：、,。.\-ー－】\]]+")


def read_decision(text: str) -> Decision | None:
    """The decision in ``text``, or None when its first written line is not one."""
    lines = _written_lines(text)
    if not lines:
        return None
    first = lines[0]
    for action, pattern in _KEYWORDS:
        match = pattern.match(_comparable(first))
        if match is None:
            continue
        rest = _rest_after(first, len(match.group(0)))
        if action is Action.APPROVE:
            if not _APPROVE_TAIL.match(rest):
                return None  # "承認できません", "承認不可": never read a negation as a yes
            return Decision(action, start_date_text=_start_date([rest, *lines[1:]]))
        reason = "\n".join(x for x in [rest, *lines[1:]] if x).strip()
        if action is Action.CANCEL:
            reason = _REASON_LABEL.sub("", reason, count=1).strip()
        return Decision(action, reason=reason)
    return None


def _written_lines(text: str) -> list[str]:
    lines: list[str] = []
    for line in new_lines(text):
        if line.rstrip() in ("--", "-- "):  # the signature starts
            break
        stripped = line.strip().strip("\u3000")
        if stripped or lines:
            lines.append(stripped)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _comparable(line: str) -> str:
    return _DECORATION.sub("", unicodedata.normalize("NFKC", line))


def _rest_after(line: str, consumed: int) -> str:
    # Measure on the normalised line; NFKC keeps the keywords' lengths, so slicing is safe.
    normal = _comparable(line)
    return _LEADING_SEPARATORS.sub("", normal[consumed:]).strip()


def _start_date(lines: list[str]) -> str | None:
    for line in lines:
        match = _START_DATE.search(unicodedata.normalize("NFKC", line))
        if match:
            return match.group("date").strip()
    return None
