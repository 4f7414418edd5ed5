"""Schema migrations (Alembic), runnable from code: ``mailbot db upgrade`` and ``serve`` call it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from db.dialect import transaction_lock

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every mailbot process.
UPGRADE_LOCK_KEY = 0x6D61696C  # "mail"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe when several processes start at once."""
    config = _config()
    with engine.begin() as connection:
        # Two `serve` processes starting together must not both create the tables.
        transaction_lock(connection, UPGRADE_LOCK_KEY)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
