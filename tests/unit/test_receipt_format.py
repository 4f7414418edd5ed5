from __future__ import annotations

import pytest

from mailbot.receipts import ReceiptSpaceExhausted, format_receipt_no, parse_receipt_no


def test_guide_examples_format() -> None:
    assert format_receipt_no(2018, 11) == "180011A"
    assert format_receipt_no(2018, 8) == "180008A"


def test_letter_series() -> None:
    assert format_receipt_no(2026, 9999) == "269999A"
    assert format_receipt_no(2026, 10000) == "260001B"
    assert format_receipt_no(2026, 26 * 9999) == "269999Z"
    with pytest.raises(ReceiptSpaceExhausted):
        format_receipt_no(2026, 26 * 9999 + 1)


def test_quoted_numbers_parse_in_any_width() -> None:
    assert parse_receipt_no("１８００１１ａ") == "180011A"
    assert parse_receipt_no(" 180011A ") == "180011A"
    assert parse_receipt_no("18011A") is None
