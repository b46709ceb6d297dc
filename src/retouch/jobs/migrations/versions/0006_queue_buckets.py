"""Queued jobs counted per range of seqs (queue_buckets, at two sizes), kept by triggers on
jobs, so a queue position and the queue-cap check cost about the same at the tail of a long
queue as at its head (see retouch.jobs.schema.queue_buckets).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouch.jobs.migrations import queue_bucket_triggers as triggers

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_buckets",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("queued", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    # Triggers first, then the count of the jobs already queued: on PostgreSQL creating a
    # trigger locks jobs against writes until this migration commits, and SQLite's write
    # lock is held throughout, so no job moves between the two.
    triggers.create_triggers("seq")
    triggers.count_queued("seq")


def downgrade() -> None:
    triggers.drop_triggers()
    op.drop_table("queue_buckets")
