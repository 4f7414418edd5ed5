"""A test's database at an older schema revision, for the tests of a migration's upgrade and
downgrade with rows in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from sqlalchemy import Engine

from db.engine import make_engine
from db.migrate import _config, upgrade


@contextmanager
def database_at(database_url: str, revision: str) -> Iterator[Engine]:
    """The (empty) database at ``database_url`` upgraded only to ``revision``; disposed after."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, revision)
        yield engine
    finally:
        engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision``, as ``alembic downgrade`` does."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
