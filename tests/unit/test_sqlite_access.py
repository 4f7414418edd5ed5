"""A SQLite database this process cannot write is named, with the user, before any query: not
"attempt to write a readonly database" at the first INSERT. (Root passes every permission
check, so the refusal is simulated here; tests/integration/test_postfix.py runs the pipe as an
unprivileged user for real.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailbot.errors import ConfigError
from mailbot.file_access import check_sqlite_access, process_user


def test_a_writable_database_passes(tmp_path: Path) -> None:
    check_sqlite_access(tmp_path / "new" / "mailbot.db")
    assert (tmp_path / "new").is_dir()  # the folder is made, as before


FILES = (
    "mailbot.db",
    "mailbot.db-wal",
    "mailbot.db-shm",
    "mailbot.db-writer",
    "mailbot.db-writer-next",
    "mailbot.db-writer-urgent",
)


@pytest.mark.parametrize("locked", [*FILES, "."])
def test_each_file_sqlite_writes_is_checked_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locked: str
) -> None:
    database = tmp_path / "mailbot.db"
    for name in FILES:
        (tmp_path / name).write_bytes(b"")
    refused = (tmp_path / locked).resolve()
    real_access = os.access

    def access(path: object, mode: int) -> bool:
        return Path(str(path)).resolve() != refused and real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ConfigError) as caught:
        check_sqlite_access(database)
    message = str(caught.value)
    assert str(refused) in message
    assert process_user() in message
    assert "not writable" in message


def test_a_folder_that_cannot_be_made_is_named_with_the_user(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot create the folder .*file.* as (user|uid)"):
        check_sqlite_access(blocker / "mailbot.db")
