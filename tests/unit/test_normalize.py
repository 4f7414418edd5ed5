"""Normalisers: IDs and codes in every form people type, names kept as typed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.normalize import (
    InvalidEmail,
    InvalidPhone,
    InvalidUserCode,
    InvalidUserId,
    clean_name,
    ident_of,
    network_of,
    nfkc,
    normalise_email,
    normalise_office_code,
    normalise_phone,
    normalise_user_code,
    normalise_user_id,
    split_id_list,
    user_code_of,
)

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SEPARATORS = [" ", "\u3000", "-", "ー", "－", "‐", "−", "–", ".", "．", "_", "＿", "・"]


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# --- user IDs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "1ANACA0A",
        "１ＡＮＡＣＡ０Ａ",
        "1anaca0a",
        "1ANAC-A0A",
        "1ANAC－A0A",
        "1ANACーA0A",
        "1ANAC‐A0A",
        "1ANAC−A0A",
        "1ANAC A0A",
        "1ANAC\u3000A0A",
        "1ANAC.A0A",
        "1ANAC_A0A",
        " 1anac-a0a ",
    ],
)
def test_user_id_typed_any_way_normalises(typed: str) -> None:
    assert normalise_user_id(typed) == "1ANACA0A"


@pytest.mark.parametrize("typed", ["1ANAC-A0", "1ANACA0A0", "1ANAC/A0A", "1ANACＡ0Ä", "", "ı" * 8])
def test_invalid_user_id_raises_with_the_value_as_typed(typed: str) -> None:
    with pytest.raises(InvalidUserId) as caught:
        normalise_user_id(typed)
    assert caught.value.value == typed
    assert isinstance(caught.value, ValueError)


def test_user_code_is_five_characters() -> None:
    assert normalise_user_code("１ａｎａｃ") == "1ANAC"
    assert normalise_user_code("1AN-AC") == "1ANAC"
    with pytest.raises(InvalidUserCode) as caught:
        normalise_user_code("1ANACA0A")
    assert caught.value.value == "1ANACA0A"


def test_parts_of_an_id() -> None:
    assert user_code_of("1ANACA0A") == "1ANAC"
    assert ident_of("1anac-a0a") == "A0A"
    assert network_of("1ANACA0A") == "netnaccs"
    assert network_of("１ＡＮＡＣ００１") == "general"
    assert network_of("1ANAC0AA") == "general"


def test_office_code_matches_registry_spelling() -> None:
    assert normalise_office_code(" ｔｙｏ０１\u3000") == "TYO01"


user_ids = st.text(alphabet=ALNUM, min_size=8, max_size=8)


@st.composite
def rendered_ids(draw: st.DrawFn, separators: list[str] = SEPARATORS) -> tuple[str, str]:
    """A valid ID and a way a person might type it: case, width and separators mixed."""
    user_id = draw(user_ids)
    out = []
    for char in user_id:
        char = char.lower() if draw(st.booleans()) else char
        char = full_width(char) if draw(st.booleans()) else char
        out.append(char)
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(separators)))
    return user_id, "".join(out)


@given(rendered_ids())
def test_any_rendering_of_a_valid_id_normalises_back(pair: tuple[str, str]) -> None:
    user_id, typed = pair
    assert normalise_user_id(typed) == user_id


@given(st.text(max_size=20))
def test_normalisation_is_idempotent_and_yields_only_valid_ids(text: str) -> None:
    try:
        once = normalise_user_id(text)
    except InvalidUserId:
        return
    assert re.fullmatch(r"[0-9A-Z]{8}", once)
    assert normalise_user_id(once) == once


# --- lists ----------------------------------------------------------------------------------


def test_split_on_commas_of_both_widths_semicolons_and_new_lines() -> None:
    text = "1ANACA0A、1ANACA0B，1ANAC001,2BXYZ001;2BXYZ002；3CDEF001\n3CDEF002\r\n\n"
    assert split_id_list(text) == [
        "1ANACA0A",
        "1ANACA0B",
        "1ANAC001",
        "2BXYZ001",
        "2BXYZ002",
        "3CDEF001",
        "3CDEF002",
    ]


def test_spaces_inside_one_id_keep_it_whole() -> None:
    assert split_id_list("1ANAC A0A") == ["1ANAC A0A"]
    assert split_id_list("1ANAC A0A, 1ANAC\u3000A0B") == ["1ANAC A0A", "1ANAC\u3000A0B"]


def test_spaces_between_whole_ids_separate_them() -> None:
    assert split_id_list("1ANACA0A 1ANACA0B\u30001ANAC001") == ["1ANACA0A", "1ANACA0B", "1ANAC001"]
    assert split_id_list("1ANAC-A0A 1ANAC-A0B") == ["1ANAC-A0A", "1ANAC-A0B"]


def test_split_keeps_pieces_as_typed_so_bad_ones_can_be_named() -> None:
    assert split_id_list("１ＡＮＡＣＡ０Ａ、1ANAC-A0") == ["１ＡＮＡＣＡ０Ａ", "1ANAC-A0"]


def test_split_codes_with_width_five() -> None:
    assert split_id_list("1ANAC 2BXYZ", width=5) == ["1ANAC", "2BXYZ"]
    assert split_id_list("1AN AC", width=5) == ["1AN AC"]


@given(
    st.lists(rendered_ids(separators=["-", "ー", "－", ".", "_"]), min_size=1, max_size=6),
    st.sampled_from([",", "、", "，", ";", "；", "\n", "\r\n", " ", "\u3000", ", ", "、\n"]),
)
def test_any_joined_list_splits_back(pairs: list[tuple[str, str]], joiner: str) -> None:
    text = joiner.join(typed for _, typed in pairs)
    assert [normalise_user_id(p) for p in split_id_list(text)] == [uid for uid, _ in pairs]


# --- names, addresses, phones -----------------------------------------------------------------


def test_names_keep_what_nfkc_would_change() -> None:
    assert clean_name("㈱髙島屋①") == "㈱髙島屋①"
    assert nfkc("㈱") == "(株)"  # why clean_name must not use NFKC


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("\u3000山田\u3000太郎\u3000様 ", "山田\u3000太郎"),
        ("山田太郎様", "山田太郎"),
        ("髙橋 殿", "髙橋"),
        ("○○株式会社 御中", "○○株式会社"),
        ("様様", "様"),
        ("ご担当者", "ご担当者"),
    ],
)
def test_clean_name_trims_spaces_and_one_honorific(typed: str, expected: str) -> None:
    assert clean_name(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Yamada@Example.CO.JP", "Yamada@example.co.jp"),
        (" <yamada@example.co.jp> ", "yamada@example.co.jp"),
        ("山田 太郎 <yamada@example.co.jp>", "yamada@example.co.jp"),
        ("ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ", "yamada@example.co.jp"),
        ("mailto:yamada@example.co.jp", "yamada@example.co.jp"),
    ],
)
def test_email_is_normalised(typed: str, expected: str) -> None:
    assert normalise_email(typed) == expected


@pytest.mark.parametrize(
    "typed", ["yamada", "yamada@example", "ya mada@example.co.jp", "@x.jp", ""]
)
def test_invalid_email_raises_with_value(typed: str) -> None:
    with pytest.raises(InvalidEmail) as caught:
        normalise_email(typed)
    assert caught.value.value == typed


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("03-1234-5678", "03-1234-5678"),
        ("０３－１２３４－５６７８", "03-1234-5678"),
        ("03ー1234ー5678", "03-1234-5678"),
        ("(03) 1234 5678", "(03)12345678"),
        ("TEL: +81-3-1234-5678", "+81-3-1234-5678"),
    ],
)
def test_phone_keeps_digits_plus_hyphen_and_parentheses(typed: str, expected: str) -> None:
    assert normalise_phone(typed) == expected


@pytest.mark.parametrize("typed", ["12345", "なし", "", "03-12"])
def test_phone_with_fewer_than_six_digits_is_invalid(typed: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise_phone(typed)
    assert caught.value.value == typed
