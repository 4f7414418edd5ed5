"""review by reply: who decided, and to whom a token was mailed

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("application") as batch:
        batch.add_column(sa.Column("decided_by", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decision_reason", sa.String(), nullable=True))
    with op.batch_alter_table("token") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token") as batch:
        batch.drop_column("recipient")
    with op.batch_alter_table("application") as batch:
        batch.drop_column("decision_reason")
        batch.drop_column("decided_at")
        batch.drop_column("decided_by")
