"""``mailbot db upgrade`` makes the first signing key; ``mailbot keys rotate`` and ``keys list``
show ids, ages and bounds, never key material; without keys, commands say what to run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from db.engine import make_engine
from db.migrate import upgrade
from tests.integration.test_cli import Cli


@pytest.fixture
def bare(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command line on a database with the tables but no key yet."""
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return Cli(tmp_path / "home", database_url, monkeypatch)


def all_material(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT material FROM signing_key")).scalars())
    finally:
        engine.dispose()


def test_keys_are_made_by_db_upgrade_rotated_and_listed_without_material(
    bare: Cli, database_url: str
) -> None:
    refused = bare("keys", "rotate")
    assert refused.returncode == 2
    assert "no signing key" in refused.stderr and "mailbot db upgrade" in refused.stderr
    assert "mailbot db upgrade" in bare("keys", "list").stdout

    made = bare("db", "upgrade")
    assert made.returncode == 0 and "created signing key 1" in made.stdout
    assert "signing keys in place" in bare("db", "upgrade").stdout

    listed_json = bare.json("keys", "list")
    assert isinstance(listed_json, list) and len(listed_json) == 1
    first = listed_json[0]
    assert first["id"] == 1 and first["state"] == "current"
    assert first["verifies_until"] is None and first["verifies"] is True

    rotated = bare("keys", "rotate")
    assert rotated.returncode == 0
    assert "key 2 is now the current key" in rotated.stdout
    assert re.search(r"key 1 still verifies until \d{4}-\d\d-\d\dT", rotated.stdout)

    again = bare.json("keys", "rotate")
    assert isinstance(again, dict)
    assert again["current"] == 3
    assert [k["id"] for k in again["verifying"]] == [2, 1]

    listed = bare("keys", "list")
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "created", "age", "(days)", "state", "verifies", "until"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert [line.split()[3] for line in lines[1:]] == ["current", "retired", "retired"]

    outputs = [made, rotated, listed, bare("keys", "list", "--json")]
    for material in all_material(database_url):
        assert len(material) >= 32
        for output in outputs:
            assert material not in output.stdout and material not in output.stderr


def test_keys_list_notes_the_override(bare: Cli) -> None:
    bare("db", "upgrade")
    bare.env["MAILBOT_SECRET_KEY"] = "s" * 40
    listed = bare("keys", "list")
    assert listed.returncode == 0
    assert "MAILBOT_SECRET_KEY is set" in listed.stderr
    assert "s" * 40 not in listed.stdout + listed.stderr
