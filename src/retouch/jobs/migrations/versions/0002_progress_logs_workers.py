"""Progress of running jobs, job log lines, and worker heartbeats.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouch.jobs.schema import SEQUENCE_TYPE

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress_step", sa.Integer, nullable=True))
        batch.add_column(sa.Column("progress_total", sa.Integer, nullable=True))
    op.create_table(
        "job_logs",
        sa.Column("seq", SEQUENCE_TYPE, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_job_logs_job_id", "job_logs", ["job_id", "seq"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_job_logs_job_id", "job_logs")
    op.drop_table("job_logs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("progress_total")
        batch.drop_column("progress_step")
