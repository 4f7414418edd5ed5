"""operations: retention of raw mail, requeued notices

``inbound_message.raw_removed_at`` and ``headers``: retention empties the raw bytes of
processed mail (``raw`` becomes ``b""``; the key headers are kept in ``headers``).
``outbound_message.raw_removed_at``: the same for sent notices (``raw`` becomes NULL).
``outbound_message.requeued_at``: when ``mailbot outbox retry`` queued a notice again, from
which its give-up time runs.

Only columns are added (no table is copied, even on SQLite): a large database upgrades at once.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message") as batch:
        batch.add_column(sa.Column("raw_removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=True))
    with op.batch_alter_table("outbound_message") as batch:
        batch.add_column(sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("raw_removed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch:
        batch.drop_column("raw_removed_at")
        batch.drop_column("requeued_at")
    with op.batch_alter_table("inbound_message") as batch:
        batch.drop_column("headers")
        batch.drop_column("raw_removed_at")
