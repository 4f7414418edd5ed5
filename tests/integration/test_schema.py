"""Schema guarantees that the invariants lean on, checked on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.engine import session_scope
from db.migrate import current_revision, head_revision, upgrade
from db.models import AuditEvent
from tests.support.migrations import database_at, downgrade


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


def test_migration_0004_lets_the_outbox_hold_intents_and_keeps_rendered_rows(
    database_url: str,
) -> None:
    """0004 makes ``raw``/``subject`` nullable (a row without bytes is an intent to render);
    rendered rows survive the upgrade, and the downgrade drops only unrendered intents."""
    with database_at(database_url, "0003") as engine:
        columns = (
            "created_at, kind, dedupe_key, recipient, message_id, status, attempts, next_attempt_at"
        )
        values = "'2026-12-15 00:00:00+00:00', 'x', :key, 'a@example.jp', :mid, 'pending', 0, "
        values += "'2026-12-15 00:00:00+00:00'"
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO outbound_message ({columns}, subject, raw) "
                    f"VALUES ({values}, 's', :raw)"
                ),
                {"key": "rendered", "mid": "<r@x>", "raw": b"bytes"},
            )
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO outbound_message ({columns}) VALUES ({values})"),
                {"key": "intent", "mid": "<i@x>"},
            )
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT dedupe_key, raw FROM outbound_message")).all()
        assert sorted((key, raw and bytes(raw)) for key, raw in rows) == [
            ("intent", None),
            ("rendered", b"bytes"),
        ]

        downgrade(engine, "0003")
        with engine.connect() as conn:
            keys = conn.execute(text("SELECT dedupe_key FROM outbound_message")).scalars()
            assert list(keys) == ["rendered"]


def test_migration_0006_adds_columns_without_touching_referenced_mail(database_url: str) -> None:
    """0006 (retention, re-queued notices) only adds columns: a stored message that the audit
    log refers to keeps its bytes, and the new columns start empty."""
    with database_at(database_url, "0005") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO inbound_message (received_at, channel, envelope_to, sha256, size,"
                    " raw, status, attempts) VALUES ('2026-12-07 00:00:00+00:00', 'smtp', '[]',"
                    " 'h', 3, :raw, 'done', 1)"
                ),
                {"raw": b"abc"},
            )
            conn.execute(
                text(
                    "INSERT INTO audit_event (at, event, actor, inbound_id, detail) VALUES "
                    "('2026-12-07 00:00:00+00:00', 'received', 'x', 1, '{}')"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            raw, removed, headers = conn.execute(
                text("SELECT raw, raw_removed_at, headers FROM inbound_message")
            ).one()
            requeued = conn.execute(text("SELECT count(requeued_at) FROM outbound_message"))
            assert (bytes(raw), removed, headers, requeued.scalar_one()) == (b"abc", None, None, 0)
