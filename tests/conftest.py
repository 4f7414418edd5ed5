"""Shared fixtures. Every storage-facing test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``MAILBOT_TEST_POSTGRES_URL`` (default: the machine's server at
127.0.0.1:5432, database ``test``). Each test gets its own schema, so tests never see each
other's rows. Without a server the PostgreSQL variants skip, except under ``CI=true``, where a
missing server fails the run: CI must never pass by skipping storage tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import Engine

from db.engine import make_engine
from db.migrate import upgrade
from mailbot.config import Settings, load_settings
from mailbot.keys import ensure_signing_key

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# A machine that runs mailbot for real has /etc/mailbot/mailbot.toml, which every command reads
# when nothing else is named. Tests (and the processes they start, which inherit this) name an
# empty file instead, so an installed configuration never leaks into them.
os.environ["MAILBOT_CONFIG"] = str(Path(__file__).resolve().parent / "empty-config.toml")


def postgres_base_url() -> str:
    return os.environ.get("MAILBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = postgres_base_url()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {url} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_schema_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailbot.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def engine(database_url: str, settings: Settings) -> Iterator[Engine]:
    """The test's database, migrated and with its first signing key, as `db upgrade` leaves it."""
    engine = make_engine(database_url)
    upgrade(engine)
    ensure_signing_key(engine, settings)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(home=tmp_path / "home", database_url=database_url)
