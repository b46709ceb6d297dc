"""Operations: key roles, per-key limits and lifetimes; fair queueing across keys (jobs are
claimed by queue_round, then seq, and queue_buckets count rounds); the bytes each job stored
and when retention expired it; uploads by key; rate-limit counters; leases.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from retouch.jobs.migrations import queue_bucket_triggers as triggers

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KEY_COLUMNS = (
    sa.Column("role", sa.String(16), nullable=False, server_default="user"),
    sa.Column("max_queued", sa.Integer, nullable=True),
    sa.Column("max_running", sa.Integer, nullable=True),
    sa.Column("submit_rate", sa.String(100), nullable=True),
    sa.Column("retain_results_seconds", sa.Float, nullable=True),
    sa.Column("retain_uploads_seconds", sa.Float, nullable=True),
)
_JOB_COLUMNS = (
    sa.Column("queue_round", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("stored_bytes", sa.BigInteger, nullable=True),
    sa.Column("expired_at", sa.Float, nullable=True),
)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN, not a batch (SQLite's batch copies the table, which
    # would drop its triggers).
    for column in _KEY_COLUMNS:
        op.add_column("api_keys", column)
    for column in _JOB_COLUMNS:
        op.add_column("jobs", column)
    # The buckets count rounds from now on. Jobs queued (or running) before keep their order:
    # their round is their seq (later submits join from the head of the queue, see
    # SqlJobStore.submit). Finished jobs' rounds play no part: they are left at 0, so the
    # migration does not rewrite the whole table. Stop every process of the old version
    # first: its submits would write round 0, at the head of the queue.
    triggers.drop_triggers()
    op.execute("UPDATE jobs SET queue_round = seq WHERE state IN ('queued', 'running')")
    op.execute("DELETE FROM queue_buckets")
    triggers.create_triggers("queue_round")
    triggers.count_queued("queue_round")
    op.drop_index("ix_jobs_state_seq", "jobs")
    op.create_index("ix_jobs_state_round", "jobs", ["state", "queue_round", "seq"])
    op.create_index("ix_jobs_key_state_round", "jobs", ["key_id", "state", "queue_round"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_table(
        "uploads",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_uploads_created_at", "uploads", ["created_at"])
    op.create_index("ix_uploads_key_id", "uploads", ["key_id"])
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_rate_limits_expires_at", "rate_limits", ["expires_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "rate_limits", "uploads"):
        op.drop_table(table)
    op.drop_index("ix_jobs_finished_at", "jobs")
    op.drop_index("ix_jobs_key_state_round", "jobs")
    op.drop_index("ix_jobs_state_round", "jobs")
    op.create_index("ix_jobs_state_seq", "jobs", ["state", "seq"])
    triggers.drop_triggers()
    # Columns first: SQLite's batch copies the table, which would drop triggers made before.
    with op.batch_alter_table("jobs") as batch:
        for column in _JOB_COLUMNS:
            batch.drop_column(column.name)
    with op.batch_alter_table("api_keys") as batch:
        for column in _KEY_COLUMNS:
            batch.drop_column(column.name)
    op.execute("DELETE FROM queue_buckets")
    triggers.create_triggers("seq")
    triggers.count_queued("seq")
