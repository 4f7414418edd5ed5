"""outbox intents: a notice may be queued before it is rendered

``outbound_message.subject`` and ``raw`` become nullable: a row without bytes is an intent
(written set-based by the transaction that causes it, e.g. applying on the start date) that
the outbox renders, stores and then delivers. Rendered rows are unchanged.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot ALTER a column's nullability, so alembic copies the table.
    with op.batch_alter_table("outbound_message") as batch:
        batch.alter_column("subject", existing_type=sa.String(), nullable=True)
        batch.alter_column("raw", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Intents not rendered yet cannot be kept in a table that requires the bytes.
    op.execute("DELETE FROM outbound_message WHERE raw IS NULL")
    with op.batch_alter_table("outbound_message") as batch:
        batch.alter_column("raw", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("subject", existing_type=sa.String(), nullable=False)
