"""Schema guarantees that the invariants lean on, checked on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.engine import session_scope
from db.migrate import current_revision, head_revision, upgrade
from db.models import AuditEvent


def test_upgrade_is_idempotent_and_reaches_head(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_audit_log_is_append_only(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(AuditEvent(event="test", actor="tester"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'forger'"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_event")).scalar_one() == "tester"


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    """A model change without its migration would work in tests and break real databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
