"""The blank request form applicants fill in (text version, for the mail body)."""

from __future__ import annotations

from mailbot.parsers.labels import CANONICAL_LABEL_JA, FIELD_ORDER

# What goes after each label in the blank form: an example or a hint, never a real value.
HINTS = {
    "office_code": "（登録連絡先が1事業所だけの場合は省略可）",
    "user_ids": "（例: 1ANACA0A　複数の場合は1行に1つ）",
    "abolish_user_codes": "（任意　例: 1ANAC）",
    "desired_start_date": "（例: 2026年12月15日）",
    "reason": "",
    "applicant_name": "",
    "applicant_phone": "（例: 03-1234-5678）",
    "applicant_email": "（任意　省略時は送信元アドレス）",
    "manager_name": "",
    "manager_email": "",
    "remarks": "（任意）",
}


def blank_form_text() -> str:
    return "\n".join(f"■{CANONICAL_LABEL_JA[name]}：{HINTS[name]}" for name in FIELD_ORDER)
