"""The triggers that keep queue_buckets exact (see retouch.jobs.schema.queue_buckets), built
for the column that orders the queue: `seq` (migration 0006), `queue_round` (0007). Frozen
like the migrations that use them: a change here must leave what they build unchanged."""

from __future__ import annotations

from alembic import op

# (level, values of the ordering column per bucket). Fixed here, not read from
# schema.QUEUE_BUCKET_SIZES: triggers already created keep the sizes they were made with.
LEVELS = ((0, 64), (1, 4096))
QUEUED = "'queued'"

# Each level's bucket size as a relation, for SQL that works on every level at once.
LEVELS_SQL = (
    "("
    + " UNION ALL ".join(f"SELECT {level} AS level, {size} AS size" for level, size in LEVELS)
    + ") AS levels"
)

SQLITE_TRIGGER_NAMES = (
    "queue_buckets_on_insert",
    "queue_buckets_enter_on_update",
    "queue_buckets_leave_on_update",
    "queue_buckets_on_delete",
)


def _sqlite_triggers(column: str) -> dict[str, tuple[str, str, str]]:
    moved = f"(OLD.state IS NOT NEW.state OR OLD.{column} IS NOT NEW.{column})"
    on_update = f"UPDATE OF state, {column}"
    return dict(
        zip(
            SQLITE_TRIGGER_NAMES,
            (
                ("INSERT", f"NEW.state = {QUEUED}", "enter"),
                (on_update, f"NEW.state = {QUEUED} AND {moved}", "enter"),
                (on_update, f"OLD.state = {QUEUED} AND {moved}", "leave"),
                ("DELETE", f"OLD.state = {QUEUED}", "leave"),
            ),
            strict=True,
        )
    )


def _sqlite_buckets(column: str, row: str, *extra: str) -> str:
    """VALUES rows naming each level's bucket of `row` (NEW or OLD), with `extra` columns."""
    return ", ".join(
        "(" + ", ".join([str(level), f"{row}.{column} / {size}", *extra]) + ")"
        for level, size in LEVELS
    )


def _sqlite_body(column: str, action: str) -> str:
    if action == "enter":
        return (
            "INSERT INTO queue_buckets (level, bucket, queued) "
            f"VALUES {_sqlite_buckets(column, 'NEW', '1')} "
            "ON CONFLICT (level, bucket) DO UPDATE SET queued = queued + 1;"
        )
    mine = f"(level, bucket) IN (VALUES {_sqlite_buckets(column, 'OLD')})"
    return (
        f"UPDATE queue_buckets SET queued = queued - 1 WHERE {mine}; "
        f"DELETE FROM queue_buckets WHERE {mine} AND queued = 0;"
    )


def create_sqlite_triggers(column: str) -> None:
    """SQLite: row triggers, which run under the write lock every writer already holds."""
    for name, (event, when, action) in _sqlite_triggers(column).items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON jobs WHEN {when} "
            f"BEGIN {_sqlite_body(column, action)} END"
        )


def drop_sqlite_triggers() -> None:
    for name in SQLITE_TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER {name}")


# PostgreSQL: statement triggers over the transition tables, applying each statement's net
# change per bucket in key order. Row triggers would lock bucket rows in whatever order the
# statement visits jobs, and two statements moving jobs of the same buckets (two reapers
# requeueing lost jobs) could deadlock. One query per event, so a submit or a claim pays one
# statement in the trigger (and a second only when a bucket empties).
def _postgres_count(column: str, change: str) -> str:
    return f"""
        WITH change AS ({change}),
        counted AS (
            INSERT INTO queue_buckets AS b (level, bucket, queued)
            SELECT level, {column} / size, sum(delta) FROM change CROSS JOIN {LEVELS_SQL}
            GROUP BY level, {column} / size HAVING sum(delta) <> 0
            ORDER BY level, {column} / size
            ON CONFLICT (level, bucket) DO UPDATE SET queued = b.queued + excluded.queued
            RETURNING level, bucket, queued
        )
        SELECT array_agg(level) FILTER (WHERE queued = 0),
            array_agg(bucket) FILTER (WHERE queued = 0)
        INTO emptied_levels, emptied_buckets FROM counted;"""


def _postgres_function(column: str) -> str:
    entered = f"SELECT {column}, 1 AS delta FROM new_rows WHERE state = {QUEUED}"
    left = f"SELECT {column}, -1 AS delta FROM old_rows WHERE state = {QUEUED}"
    return f"""
CREATE OR REPLACE FUNCTION retouch_count_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    emptied_levels smallint[];
    emptied_buckets bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN {_postgres_count(column, entered)}
    ELSIF TG_OP = 'UPDATE' THEN {_postgres_count(column, f"{entered} UNION ALL {left}")}
    ELSIF TG_OP = 'DELETE' THEN {_postgres_count(column, left)}
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


def create_postgres_function(column: str) -> None:
    """PostgreSQL: the triggers' function, counting by `column` (replacing an earlier one)."""
    op.execute(_postgres_function(column))


def create_postgres_triggers() -> None:
    for name, event in POSTGRES_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} FOR EACH STATEMENT "
            "EXECUTE FUNCTION retouch_count_queued()"
        )


def drop_postgres_triggers() -> None:
    for name in POSTGRES_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON jobs")
    op.execute("DROP FUNCTION retouch_count_queued()")


def count_queued(column: str) -> None:
    """Fill queue_buckets from the jobs queued now (the triggers keep it from then on)."""
    op.execute(
        "INSERT INTO queue_buckets (level, bucket, queued) "
        f"SELECT level, {column} / size, count(*) FROM jobs CROSS JOIN {LEVELS_SQL} "
        f"WHERE state = {QUEUED} GROUP BY level, {column} / size"
    )


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def create_triggers(column: str) -> None:
    """The triggers of this database's dialect, counting by `column`."""
    if _postgres():
        create_postgres_function(column)
        create_postgres_triggers()
    else:
        create_sqlite_triggers(column)


def drop_triggers() -> None:
    if _postgres():
        drop_postgres_triggers()
    else:
        drop_sqlite_triggers()
