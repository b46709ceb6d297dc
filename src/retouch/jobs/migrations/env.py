"""Alembic environment: always run programmatically on a connection the caller opened
(see retouch.jobs.database.migrate), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from retouch.jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
