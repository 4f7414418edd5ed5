"""The ANALYZE recipe of docs/operations.md ("After a bulk load"), run as written against a
real PostgreSQL: afterwards every mailbot table has statistics."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from db.engine import make_engine
from db.migrate import upgrade

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def recipe() -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("**After a bulk load, run `ANALYZE`.**") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "no sh block after 'After a bulk load'"
    return found.group(1)


def tables_without_statistics(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE last_analyze IS NULL) "
            "FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


@pytest.mark.postgres
def test_the_analyze_recipe_gives_every_table_statistics(postgres_schema_url: str) -> None:
    engine = make_engine(postgres_schema_url)
    upgrade(engine)
    engine.dispose()
    tables, _ = tables_without_statistics(postgres_schema_url)
    assert tables > 10

    env = {**os.environ, "MAILBOT_DATABASE_URL": postgres_schema_url}
    ran = subprocess.run(
        ["sh", "-ec", recipe()], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr

    deadline = time.monotonic() + 10  # the statistics views are updated as backends report
    while tables_without_statistics(postgres_schema_url)[1]:
        assert time.monotonic() < deadline, "tables left without statistics after ANALYZE"
        time.sleep(0.2)
