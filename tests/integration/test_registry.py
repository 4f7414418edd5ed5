"""Registry and schedule import, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from db.engine import session_scope
from db.models import OfficeContact, RegistrationDate, UserId
from mailbot.errors import ImportFileError, NotFoundError
from mailbot.registry import describe, import_registry
from mailbot.schedule_table import import_schedule, registration_dates
from tests.conftest import EXAMPLES

HEADER = "office_code,company,office,department,contact_emails,user_id\n"


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "reg.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_demo_registry_imports_and_shows_ids(engine: Engine) -> None:
    with session_scope(engine) as session:
        summary = import_registry(session, EXAMPLES / "registry-demo.csv")
    assert (summary.offices, summary.user_ids, summary.new_user_ids) == (2, 6, 6)
    with session_scope(engine) as session:
        shown = describe(session, "１ａｎａｃ－ａ０ａ")
    assert shown["kind"] == "user_id"
    assert shown["user_id"] == "1ANACA0A"
    assert shown["network"] == "netnaccs"
    assert shown["office"]["company"] == "○○株式会社"
    assert shown["user_code"]["shared"] is True  # 1ANAC is held by TYO01 and OSK01 (rule 4)
    assert shown["user_code"]["offices"] == ["OSK01", "TYO01"]


def test_cp932_registry_keeps_japanese_names(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "NGY01,㈱髙島屋商会,名古屋事業所,総務部,a@example.jp,3CCCC001\n",
        encoding="cp932",
    )
    with session_scope(engine) as session:
        import_registry(session, path)
        office = describe(session, "NGY01")
    assert office["company"] == "㈱髙島屋商会"
    assert [u["user_id"] for u in office["user_ids"]] == ["3CCCC001"]
    assert office["user_ids"][0]["network"] == "general"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("TYO09,Co,Office,Dept,a@example.jp,1ANAC-A0\n", "user_id '1ANAC-A0'"),
        ("TYO09,Co,Office,Dept,not-an-address,1ANACZZZ\n", "invalid address"),
        ("TYO09,Co,Office,Dept,,1ANACZZZ\n", "contact_emails is empty"),
        ("TYO09,Co,Office,Dept,a@example.jp\n", "expected 6 columns"),
        ("TYO01,Other Co,Office,Dept,a@example.jp,1ANACZZZ\n", "differs from its first row"),
        ("TYO01,Co,Office,Dept,a@example.jp,1ANACA0B\n", "appears twice"),
    ],
)
def test_a_bad_row_aborts_the_whole_import_naming_its_line(
    engine: Engine, tmp_path: Path, row: str, reason: str
) -> None:
    good = "TYO01,Co,Office,Dept,a@example.jp,1ANACA0B\n"
    path = write(tmp_path, HEADER + good + row)
    with pytest.raises(ImportFileError) as caught, session_scope(engine) as session:
        import_registry(session, path)
    assert "line 3" in str(caught.value)
    assert reason in str(caught.value)
    with session_scope(engine) as session:
        assert session.exec(select(UserId)).first() is None, "nothing may be imported"


def test_wrong_header_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "office,user\nA,B\n")
    with (
        pytest.raises(ImportFileError, match="line 1: the header must be"),
        session_scope(engine) as session,
    ):
        import_registry(session, path)


def test_reimport_updates_contacts_and_keeps_abolished_state(
    engine: Engine, tmp_path: Path
) -> None:
    first = write(tmp_path, HEADER + "TYO01,Co,Office,Dept,a@example.jp,1ANACA0A\n", name="1.csv")
    second = write(
        tmp_path, HEADER + "TYO01,Co,Office,Dept,b@example.jp;C@Example.jp,1ANACA0A\n", name="2.csv"
    )
    with session_scope(engine) as session:
        import_registry(session, first)
        user = session.get(UserId, "1ANACA0A")
        assert user is not None
        user.status, user.abolished_on = "abolished", date(2026, 12, 1)
        session.add(user)
    with session_scope(engine) as session:
        summary = import_registry(session, second)
    assert summary.new_user_ids == 0
    with session_scope(engine) as session:
        contacts = sorted(session.exec(select(OfficeContact.email)))
        user = session.get(UserId, "1ANACA0A")
    assert contacts == ["b@example.jp", "c@example.jp"]
    assert user is not None and user.status == "abolished"


def test_reimport_moves_an_id_to_its_new_office_and_adds_the_rest(
    engine: Engine, tmp_path: Path
) -> None:
    # More IDs than one lookup chunk, so the chunked lookups are exercised too.
    many = [f"2{n // 10:04d}A0{n % 10}" for n in range(1500)]
    rows = [f"TYO01,Co,Tokyo,Dept,a@example.jp,{u}\n" for u in many]
    first = write(tmp_path, HEADER + "".join(rows), name="1.csv")
    moved_row = f"OSK01,Co,Osaka,Dept,o@example.jp,{many[0]}\n"
    second = write(tmp_path, HEADER + "".join(rows[1:]) + moved_row, name="2.csv")
    with session_scope(engine) as session:
        assert import_registry(session, first).new_user_ids == 1500
    with session_scope(engine) as session:
        summary = import_registry(session, second)
        moved = describe(session, "20000A00")
        stayed = describe(session, "20149A09")
    assert (summary.offices, summary.user_ids, summary.new_user_ids) == (2, 1500, 0)
    assert moved["office_code"] == "OSK01"
    assert stayed["office_code"] == "TYO01"


def test_show_unknown_key_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError), session_scope(engine) as session:
        describe(session, "ZZZZZZZZ")


def test_schedule_import_lists_and_replaces(engine: Engine, tmp_path: Path) -> None:
    extra = write(tmp_path, "2027-02-02\n# comment\n\n2026-12-01 # dup\n", name="s.txt")
    with session_scope(engine) as session:
        assert import_schedule(session, EXAMPLES / "schedule-demo.txt") == 7
        import_schedule(session, extra)
    with session_scope(engine) as session:
        days = registration_dates(session, on_or_after=date(2027, 1, 20))
    assert days == [date(2027, 1, 26), date(2027, 2, 2)]
    with session_scope(engine) as session:
        import_schedule(session, extra, replace=True)
        assert sorted(session.exec(select(col(RegistrationDate.day)))) == [
            date(2026, 12, 1),
            date(2027, 2, 2),
        ]


def test_schedule_bad_date_names_line(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "2026-12-01\n2026/13/01\n", name="s.txt")
    with pytest.raises(ImportFileError, match="line 2"), session_scope(engine) as session:
        import_schedule(session, path)
