"""a signing key can be revoked: it stops verifying at once (a leaked key)

``signing_key.revoked_at``: when an operator revoked the key (``mailbot keys revoke``). A revoked
key verifies nothing from then on, whatever it signed; a retired key that is not revoked still
verifies until the longest token it signed has expired. See mailbot.keys.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "signing_key", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Batch mode: SQLite drops a column by copying the table. Going back forgets revocations:
    # rotate again and revoke after upgrading once more.
    with op.batch_alter_table("signing_key") as batch:
        batch.drop_column("revoked_at")
