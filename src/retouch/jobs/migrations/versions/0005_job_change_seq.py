"""A change counter on jobs, so a SQLite reader can tell which jobs changed since its last
look (PostgreSQL sends the job id in NOTIFY instead and leaves it empty).

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
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("change_seq", sa.BigInteger, nullable=True))
        batch.create_index("ix_jobs_change_seq", ["change_seq"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_change_seq")
        batch.drop_column("change_seq")
