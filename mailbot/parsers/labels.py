"""The one table of request-form labels, and how a typed label is matched to a field.

Every parser (mail body, CSV, XLSX) asks :func:`match_label` what a label means, so a label
accepted in one format is accepted in all. Matching is format-neutral: it ignores width, case,
spaces (including U+3000), underscores, hyphens and the decorations people put around labels
(``【…】``, ``■``, ``1.``, ``①``, ``（必須）``, ``※ notes``, a trailing ``：``).

Decisions:

* A label matches only as a whole (after cleaning), never by prefix, so the more specific
  ``申込担当者電話番号`` can never be taken for ``申込担当者``. Parsers that have to find where a
  label ends inside a line (the body parser) try the longest candidate first.
* Ambiguous words are deliberately *not* aliases: bare ``メールアドレス`` / ``email`` (applicant
  or manager?), ``氏名``, ``利用者コード`` (a code to abolish, or the code the IDs belong to?),
  ``事業所`` (a name or a code?). They are reported as unknown labels, and the message lists the
  accepted ones, rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from mailbot.problems import Problem

FIELD_ORDER: Final[tuple[str, ...]] = (
    "office_code",
    "user_ids",
    "abolish_user_codes",
    "desired_start_date",
    "reason",
    "applicant_name",
    "applicant_phone",
    "applicant_email",
    "manager_name",
    "manager_email",
    "remarks",
)

# The Japanese labels of docs/domain.md#fields-and-labels: the blank form and messages show them.
CANONICAL_LABEL_JA: Final[Mapping[str, str]] = MappingProxyType(
    {
        "office_code": "事業所コード",
        "user_ids": "廃止する利用者ID",
        "abolish_user_codes": "利用者コードの廃止",
        "desired_start_date": "利用開始希望日",
        "reason": "変更する理由",
        "applicant_name": "申込担当者",
        "applicant_phone": "申込担当者電話番号",
        "applicant_email": "申込担当者メールアドレス",
        "manager_name": "管理責任者",
        "manager_email": "管理責任者メールアドレス",
        "remarks": "備考",
    }
)

# Fields whose value may be several items (one per line, or separated by commas or spaces).
LIST_FIELDS: Final[frozenset[str]] = frozenset({"user_ids", "abolish_user_codes"})
# Free-text fields that may run over several lines.
MULTILINE_FIELDS: Final[frozenset[str]] = frozenset({"reason", "remarks"})

# Every accepted spelling, by field. Written as people type them; width, case, spaces,
# underscores and hyphens do not matter (see label_key), so "ユーザーＩＤ" and "user-id" need no
# entries of their own. The canonical Japanese label and the English code name come first.
LABEL_ALIASES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "office_code": (
            "事業所コード",
            "office_code",
            "事業所CD",
            "事業所番号",
            "事業所ID",
            "office id",
        ),
        "user_ids": (
            "廃止する利用者ID",
            "user_ids",
            "利用者ID",
            "廃止利用者ID",
            "廃止対象利用者ID",
            "廃止対象の利用者ID",
            "対象利用者ID",
            "廃止するID",
            "廃止ID",
            "利用者ID一覧",
            "廃止する利用者ID一覧",
            "ユーザID",
            "ユーザーID",
            "廃止するユーザID",
            "廃止するユーザーID",
            "user id",
            "ids",
            "user ids to abolish",
            "abolish user ids",
        ),
        "abolish_user_codes": (
            "利用者コードの廃止",
            "abolish_user_codes",
            "廃止する利用者コード",
            "廃止利用者コード",
            "利用者コード廃止",
            "廃止対象利用者コード",
            "廃止対象の利用者コード",
            "廃止するコード",
            "user codes to abolish",
            "abolish user code",
            "abolished user codes",
        ),
        "desired_start_date": (
            "利用開始希望日",
            "desired_start_date",
            "利用開始日",
            "希望日",
            "開始希望日",
            "利用開始希望年月日",
            "希望利用開始日",
            "適用希望日",
            "廃止希望日",
            "廃止日",
            "start date",
            "desired date",
        ),
        "reason": (
            "変更する理由",
            "reason",
            "変更理由",
            "理由",
            "申込理由",
            "廃止理由",
            "廃止する理由",
            "reason for change",
        ),
        "applicant_name": (
            "申込担当者",
            "applicant_name",
            "申込担当者名",
            "申込担当者氏名",
            "担当者",
            "担当者名",
            "担当者氏名",
            "申込者",
            "申込者名",
            "申込者氏名",
            "applicant",
            "contact name",
        ),
        "applicant_phone": (
            "申込担当者電話番号",
            "applicant_phone",
            "申込担当者電話",
            "申込担当者TEL",
            "担当者電話番号",
            "担当者電話",
            "担当者TEL",
            "申込者電話番号",
            "電話番号",
            "電話",
            "TEL",
            "連絡先電話番号",
            "phone",
            "phone number",
            "telephone",
            "applicant tel",
        ),
        "applicant_email": (
            "申込担当者メールアドレス",
            "applicant_email",
            "申込担当者メール",
            "申込担当者E-mail",
            "担当者メールアドレス",
            "担当者メール",
            "担当者E-mail",
            "申込者メールアドレス",
            "applicant e-mail",
            "applicant email address",
        ),
        "manager_name": (
            "管理責任者",
            "manager_name",
            "管理責任者名",
            "管理責任者氏名",
            "責任者",
            "責任者名",
            "責任者氏名",
            "manager",
        ),
        "manager_email": (
            "管理責任者メールアドレス",
            "manager_email",
            "管理責任者メール",
            "管理責任者E-mail",
            "責任者メールアドレス",
            "責任者メール",
            "manager e-mail",
            "manager email address",
        ),
        "remarks": (
            "備考",
            "remarks",
            "備考欄",
            "その他",
            "補足",
            "特記事項",
            "連絡事項",
            "remark",
            "notes",
            "note",
            "comments",
            "comment",
        ),
    }
)

# Ignored inside a label when comparing: spaces (NFKC made U+3000 one), underscores, hyphens and
# dashes, middle dots and full stops ("e-mail", "user_ids", "Tel.", "申込担当者・電話番号").
_KEY_IGNORED = re.compile(r"[\s_\-‐‑‒–—―−・.]+")

# Parenthesised groups are always notes: "（必須）", "(required)", "（8桁）", a leading "(1)".
# Matched before NFKC, which would make a note of "㈱" ("(株)").
_PAREN_GROUP = re.compile(r"[(（][^()（）]*[)）]")
# The other decorations are matched on NFKC text (so ［］＊ arrive as []*).
# A bracketed note word before or after the label: "【必須】利用者ID", "user_ids [optional]".
_NOTE_BRACKET = re.compile(
    r"[\[【〔〈《]\s*(?:必須|任意|必須項目|任意項目|省略可|省略可能|required|optional)\s*[\]】〕〉》]",
    re.IGNORECASE,
)
# Bullets and numbering in front: "■", "・", "*", "#", "1.", "1)", "1、", and "①", which NFKC
# has already made a bare "1" (no label starts with a digit, so a leading number is always
# numbering).
_LEADING = re.compile(
    r"^(?:[\s■□●○◆◇▼▽▲△►▶★☆◎・*•#+\-]|\d{1,3}[.)、]?|\(\d{1,3}\)|[a-z][.)]\s)+", re.I
)
_TRAILING = re.compile(r"[\s:=*(\[【]+$")  # "*" too: Markdown "**備考**："
# A bracketed group after the label is a note too: "利用開始希望日【YYYY/MM/DD】", "user_ids [8桁]".
# Only after text: a wholly bracketed "【利用者ID】" is the label itself.
_TRAILING_BRACKET_NOTE = re.compile(
    r"(?<=[^\s\[\]【】〔〕〈〉《》])\s*[\[【〔〈《][^\[\]【】〔〕〈〉《》]*[\]】〕〉》]$"
)
# Not 「」『』: those quote a word in prose ("「利用者ID」：8桁の英数字"), they do not make a label.
_BRACKET_CHARS = re.compile(r"[\[\]【】〔〕〈〉《》]")


def label_key(text: str) -> str:
    """The comparison form of a label: NFKC, case-folded, without spaces/underscores/hyphens."""
    return _KEY_IGNORED.sub("", unicodedata.normalize("NFKC", text).casefold())


def strip_label_decorations(text: str) -> str:
    """The label without decorations, NFKC-normalised: ``■【利用者ＩＤ】（必須）：`` → ``利用者ID``.

    Removes parenthesised notes, bracketed note words, ``※`` and everything after it, leading
    bullets and numbering, a trailing colon, and the brackets around (or inside) the label.
    """
    cleaned = text
    previous = None
    while previous != cleaned:  # nested notes: "(例(半角))"
        previous = cleaned
        cleaned = _PAREN_GROUP.sub(" ", cleaned)
    cleaned = unicodedata.normalize("NFKC", cleaned)
    cleaned = _NOTE_BRACKET.sub(" ", cleaned)
    cleaned = _LEADING.sub("", cleaned)
    cleaned = cleaned.split("※", 1)[0]  # "※" starts a note: "利用者ID※8桁", "※印は必須"
    cleaned = _TRAILING.sub("", cleaned)
    cleaned = _TRAILING_BRACKET_NOTE.sub("", cleaned)
    cleaned = _BRACKET_CHARS.sub("", cleaned)
    cleaned = _LEADING.sub("", cleaned)  # a bullet inside the brackets: "【■備考】"
    return _TRAILING.sub("", cleaned).strip()


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for name, aliases in LABEL_ALIASES.items():
        for alias in aliases:
            key = label_key(alias)
            if index.setdefault(key, name) != name:
                # A programming error in the table above: one spelling, two fields.
                raise ValueError(f"label {alias!r} is an alias of {index[key]} and {name}")
    return index


_INDEX: Final[Mapping[str, str]] = MappingProxyType(_build_index())


def match_label(text: str) -> str | None:
    """The canonical field name ``text`` labels, or None if it is no known label.

    ``text`` is a label as typed, with any decoration: ``【利用者ID】``, ``■利用者ID：``,
    ``①利用者ＩＤ（必須）``, ``利用者ID　※8桁``, ``User IDs:``. It must be the label alone, not
    a whole ``label：value`` line.
    """
    cleaned = strip_label_decorations(text)
    return _INDEX.get(label_key(cleaned)) if cleaned else None


def accepted_labels_ja() -> str:
    """The canonical Japanese labels, for messages: ``事業所コード、廃止する利用者ID、…``."""
    return "、".join(CANONICAL_LABEL_JA[name] for name in FIELD_ORDER)


def unknown_label_problem(label: str, location: str | None) -> Problem:
    """The problem every parser reports for a label it does not know."""
    return Problem(
        code="form.unknown_label",
        field=None,
        value=label,
        message_ja=(
            f"「{label}」は申込書の項目名として認識できません。"
            f"次のいずれかの項目名に直してください: {accepted_labels_ja()}"
        ),
        message_en=(
            f'"{label}" is not a label of the request form. Use one of: '
            f"{', '.join(FIELD_ORDER)} (or the Japanese labels)."
        ),
        location=location,
    )
