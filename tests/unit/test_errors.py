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
