"""scale indexes: counts and claims that stay cheap as the data grows

Found by EXPLAIN QUERY PLAN on a database of 1,000,000 user IDs and 100,000 past applications
(bench/scale.py, docs/performance.md): ``/healthz`` and ``/metrics`` counted abolished IDs,
emptied messages and notices by scanning their tables (275 ms a request; 85 ms with these).

* ``user_id (status)``: the abolished IDs are counted from the index.
* ``inbound_message (status, id, size)`` instead of ``(status)``: the worker's claim (pending,
  oldest first, with sizes) and the byte sums by status read the index, not the rows (which
  hold the raw bytes).
* ``inbound_message (raw_removed_at)``: the messages retention emptied, counted.
* ``outbound_message (status, kind)`` instead of ``(status)``: notices by status and kind.

Only indexes: no table is copied, even on SQLite.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_user_id_status", "user_id", ["status"])
    op.drop_index("ix_inbound_message_status", table_name="inbound_message")
    op.create_index(
        "ix_inbound_message_status_id_size", "inbound_message", ["status", "id", "size"]
    )
    op.create_index("ix_inbound_message_raw_removed_at", "inbound_message", ["raw_removed_at"])
    op.drop_index("ix_outbound_message_status", table_name="outbound_message")
    op.create_index("ix_outbound_message_status_kind", "outbound_message", ["status", "kind"])


def downgrade() -> None:
    op.drop_index("ix_outbound_message_status_kind", table_name="outbound_message")
    op.create_index("ix_outbound_message_status", "outbound_message", ["status"])
    op.drop_index("ix_inbound_message_raw_removed_at", table_name="inbound_message")
    op.drop_index("ix_inbound_message_status_id_size", table_name="inbound_message")
    op.create_index("ix_inbound_message_status", "inbound_message", ["status"])
    op.drop_index("ix_user_id_status", table_name="user_id")
