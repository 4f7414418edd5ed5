"""scheduler: APScheduler's job store table (apscheduler_jobs)

The columns are those of apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore (3.11), which
then finds the table in place and never creates it itself.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("apscheduler_jobs") as batch:
        batch.create_index(
            batch.f("ix_apscheduler_jobs_next_run_time"), ["next_run_time"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("apscheduler_jobs") as batch:
        batch.drop_index(batch.f("ix_apscheduler_jobs_next_run_time"))
    op.drop_table("apscheduler_jobs")
