"""The surface (protocol) a job was submitted through, so its answers and its webhook keep that
surface's shape: NULL for the contract's own (RunComfy), `fal`, `fal+sync` or `replicate`.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch: SQLite's batch copies the table, dropping its triggers.
    op.add_column("jobs", sa.Column("surface", sa.String(32), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (no copy, the triggers stay).
    op.drop_column("jobs", "surface")
