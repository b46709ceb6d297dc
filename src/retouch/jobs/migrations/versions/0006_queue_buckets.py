"""Queued jobs counted per range of seqs (queue_buckets, at two sizes), kept by triggers on
jobs, so a queue position and the queue-cap check cost about the same at the tail of a long
queue as at its head (see retouch.jobs.schema.queue_buckets).

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

# (level, seqs per bucket). Fixed here, not read from schema.QUEUE_BUCKET_SIZES: triggers
# already created keep the sizes they were made with, so changing them takes a new migration.
LEVELS = ((0, 64), (1, 4096))
QUEUED = "'queued'"

# SQLite: row triggers, which run under the write lock every writer already holds.
SQLITE_TRIGGERS = {
    "queue_buckets_on_insert": ("INSERT", f"NEW.state = {QUEUED}", "enter"),
    "queue_buckets_enter_on_update": (
        "UPDATE OF state, seq",
        f"NEW.state = {QUEUED} AND (OLD.state IS NOT NEW.state OR OLD.seq IS NOT NEW.seq)",
        "enter",
    ),
    "queue_buckets_leave_on_update": (
        "UPDATE OF state, seq",
        f"OLD.state = {QUEUED} AND (OLD.state IS NOT NEW.state OR OLD.seq IS NOT NEW.seq)",
        "leave",
    ),
    "queue_buckets_on_delete": ("DELETE", f"OLD.state = {QUEUED}", "leave"),
}


def _sqlite_buckets(row: str, *extra: str) -> str:
    """VALUES rows naming each level's bucket of `row` (NEW or OLD), with `extra` columns."""
    return ", ".join(
        "(" + ", ".join([str(level), f"{row}.seq / {size}", *extra]) + ")" for level, size in LEVELS
    )


def _sqlite_body(action: str) -> str:
    if action == "enter":
        return (
            "INSERT INTO queue_buckets (level, bucket, queued) "
            f"VALUES {_sqlite_buckets('NEW', '1')} "
            "ON CONFLICT (level, bucket) DO UPDATE SET queued = queued + 1;"
        )
    mine = f"(level, bucket) IN (VALUES {_sqlite_buckets('OLD')})"
    return (
        f"UPDATE queue_buckets SET queued = queued - 1 WHERE {mine}; "
        f"DELETE FROM queue_buckets WHERE {mine} AND queued = 0;"
    )


def _sqlite_upgrade() -> None:
    for name, (event, when, action) in SQLITE_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON jobs WHEN {when} "
            f"BEGIN {_sqlite_body(action)} END"
        )


# Each level's bucket size as a relation, for SQL that works on every level at once.
LEVELS_SQL = (
    "("
    + " UNION ALL ".join(f"SELECT {level} AS level, {size} AS size" for level, size in LEVELS)
    + ") AS levels"
)

# PostgreSQL: statement triggers over the transition tables, applying each statement's net
# change per bucket in key order. Row triggers would lock bucket rows in whatever order the
# statement visits jobs, and two statements moving jobs of the same buckets (two reapers
# requeueing lost jobs) could deadlock. One query per event, so a submit or a claim pays one
# statement in the trigger (and a second only when a bucket empties).
ENTERED = f"SELECT seq, 1 AS delta FROM new_rows WHERE state = {QUEUED}"
LEFT = f"SELECT seq, -1 AS delta FROM old_rows WHERE state = {QUEUED}"


def _postgres_count(change: str) -> str:
    return f"""
        WITH change AS ({change}),
        counted AS (
            INSERT INTO queue_buckets AS b (level, bucket, queued)
            SELECT level, seq / size, sum(delta) FROM change CROSS JOIN {LEVELS_SQL}
            GROUP BY level, seq / size HAVING sum(delta) <> 0 ORDER BY level, seq / size
            ON CONFLICT (level, bucket) DO UPDATE SET queued = b.queued + excluded.queued
            RETURNING level, bucket, queued
        )
        SELECT array_agg(level) FILTER (WHERE queued = 0),
            array_agg(bucket) FILTER (WHERE queued = 0)
        INTO emptied_levels, emptied_buckets FROM counted;"""


POSTGRES_FUNCTION = f"""
CREATE FUNCTION retouch_count_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    emptied_levels smallint[];
    emptied_buckets bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN {_postgres_count(ENTERED)}
    ELSIF TG_OP = 'UPDATE' THEN {_postgres_count(f"{ENTERED} UNION ALL {LEFT}")}
    ELSIF TG_OP = 'DELETE' THEN {_postgres_count(LEFT)}
    ELSE
        DELETE FROM queue_buckets;
    END IF;
    -- Only buckets holding a queued job keep a row.
    IF emptied_buckets IS NOT NULL THEN
        DELETE FROM queue_buckets WHERE queued = 0
        AND (level, bucket) IN (SELECT * FROM unnest(emptied_levels, emptied_buckets));
    END IF;
    RETURN NULL;
END
$$
"""
# Transition tables allow one event per trigger.
POSTGRES_TRIGGERS = {
    "queue_buckets_on_insert": "INSERT ON jobs REFERENCING NEW TABLE AS new_rows",
    "queue_buckets_on_update": (
        "UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "queue_buckets_on_delete": "DELETE ON jobs REFERENCING OLD TABLE AS old_rows",
    "queue_buckets_on_truncate": "TRUNCATE ON jobs",
}


def _postgres_upgrade() -> None:
    op.execute(POSTGRES_FUNCTION)
    for name, event in POSTGRES_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} FOR EACH STATEMENT "
            "EXECUTE FUNCTION retouch_count_queued()"
        )


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
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()
    else:
        _sqlite_upgrade()
    op.execute(
        "INSERT INTO queue_buckets (level, bucket, queued) "
        f"SELECT level, seq / size, count(*) FROM jobs CROSS JOIN {LEVELS_SQL} "
        f"WHERE state = {QUEUED} GROUP BY level, seq / size"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in POSTGRES_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON jobs")
        op.execute("DROP FUNCTION retouch_count_queued()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("queue_buckets")
