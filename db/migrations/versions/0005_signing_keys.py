"""signing keys in the database, shared by every process; each reply token names its key

``signing_key`` holds the keys (the first one is made, or imported from
``$MAILBOT_HOME/secret_key``, by ``mailbot db upgrade`` and ``serve``: see mailbot.keys, not
here, because a migration must not read a process's home). ``token.key_id`` names the key that
signed a reply token; tokens issued before this revision have none (their key is the imported
one).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("imported", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("material"),
    )
    # Batch mode: SQLite adds a column with a foreign key only by copying the table.
    with op.batch_alter_table("token") as batch:
        batch.add_column(sa.Column("key_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_token_key_id", "signing_key", ["key_id"], ["id"])
        batch.create_index("ix_token_key_expiry", ["key_id", "expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("token") as batch:
        batch.drop_index("ix_token_key_expiry")
        batch.drop_constraint("fk_token_key_id", type_="foreignkey")
        batch.drop_column("key_id")
    op.drop_table("signing_key")
