"""The exception family: a bilingual error takes its languages by name, Japanese and English."""

from __future__ import annotations

import pytest

from mailbot.errors import BilingualError, MailbotError


def test_a_bilingual_error_keeps_both_languages_and_prints_english() -> None:
    error = BilingualError(ja="取り消せません。", en="cannot be cancelled")
    assert isinstance(error, MailbotError)
    assert (error.message_ja, error.message_en) == ("取り消せません。", "cannot be cancelled")
    assert str(error) == "cannot be cancelled"  # what the CLI prints


def test_a_bilingual_error_takes_its_languages_only_by_name() -> None:
    with pytest.raises(TypeError):
        BilingualError("取り消せません。", "cannot be cancelled")  # type: ignore[call-arg]


def test_an_unavailable_document_is_bilingual_by_name_and_prints_both_languages() -> None:
    from datetime import date

    from mailbot.documents import DocumentUnavailable

    refused = DocumentUnavailable(
        ja="承認通知は利用開始日以降に出力できます。",
        en="the approval notice can be produced from its start date on",
        available_from=date(2026, 12, 15),
    )
    assert isinstance(refused, BilingualError)
    assert refused.message_ja == "承認通知は利用開始日以降に出力できます。"
    # `mailbot document` prints it to an operator, who may read either language.
    assert str(refused) == (
        "承認通知は利用開始日以降に出力できます。 / "
        "the approval notice can be produced from its start date on"
    )
    with pytest.raises(TypeError):
        DocumentUnavailable("承認通知は…", "the approval notice…", None)  # type: ignore[call-arg]
