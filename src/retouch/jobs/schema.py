"""The one schema both store backends share. Migrations create and upgrade it; queries use
these Table objects. Times are UNIX seconds (float) in UTC; the API formats them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SEQUENCE_TYPE = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    # Signs this key's webhooks (Standard Webhooks "whsec_…"); made on first use. Kept in the
    # clear because signing needs it, as every webhook sender does.
    Column("webhook_secret", String(100), nullable=True),
    # "user" or "admin" (admins see every key's jobs and the workers, and cancel any job).
    Column("role", String(16), nullable=False, server_default="user"),
    # Per-key limits and lifetimes; NULL takes the server-wide default (retouch.config).
    Column("max_queued", Integer, nullable=True),
    Column("max_running", Integer, nullable=True),
    # A rate in the `limits` library's notation ("60/minute", "1000 per day").
    Column("submit_rate", String(100), nullable=True),
    Column("retain_results_seconds", Float, nullable=True),
    Column("retain_uploads_seconds", Float, nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    # seq is the submit order; id is the public request id. Jobs are claimed in the order
    # (queue_round, seq): see queue_round.
    Column("seq", SEQUENCE_TYPE, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("key_id", String(32), nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("input", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_token", String(36), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("worker_id", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("result", Text, nullable=True),
    Column("error_code", String(100), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("progress_step", Integer, nullable=True),
    Column("progress_total", Integer, nullable=True),
    # Where the result is POSTed when the job ends, and the base of the URLs in that body.
    Column("webhook_url", Text, nullable=True),
    Column("base_url", String(500), nullable=True),
    # SQLite: the change counter's value at the job's last change (retouch.jobs.changes).
    Column("change_seq", BigInteger, nullable=True),
    # Fair queueing across keys (round robin): a job's round is one past its key's newest
    # queued job's, and never before the head of the queue, so each key has at most one job
    # in each round from the head on, and a key's backlog cannot starve another key. See
    # retouch.jobs.sql_store.SqlJobStore.submit.
    Column("queue_round", BigInteger, nullable=False, server_default="0"),
    # The bytes of the job's output files (set when it succeeds), for disk usage per key.
    Column("stored_bytes", BigInteger, nullable=True),
    # When retention deleted the job's files and payloads (its row stays, so it can say so).
    Column("expired_at", Float, nullable=True),
    # The surface (protocol) it was submitted through: NULL for the contract's own, or
    # `fal`, `fal+sync`, `replicate` (retouch.api.surfaces), whose shapes its answers keep.
    Column("surface", String(32), nullable=True),
    Index("ix_jobs_state_round", "state", "queue_round", "seq"),
    Index("ix_jobs_change_seq", "change_seq"),
    Index("ix_jobs_key_seq", "key_id", "seq"),
    # A key's queued and running jobs: its limits and the round of its next job.
    Index("ix_jobs_key_state_round", "key_id", "state", "queue_round"),
    # Retention finds finished jobs by age.
    Index("ix_jobs_finished_at", "finished_at"),
)

# How many jobs are queued in each range of rounds, at two sizes: level 0 counts per
# QUEUE_BUCKET_SIZES[0] rounds, level 1 per QUEUE_BUCKET_SIZES[1] (bucket = queue_round //
# size). A queue position is then a sum over one level-1 row per 4096 rounds ahead and fewer
# than 64 level-0 rows, plus a count of the index entries of fewer than 64 rounds (one job
# per key with jobs queued there), never a count of the whole queue ahead. Kept exact by
# triggers on jobs (migrations 0006, 0007), so no write can miss it; only buckets holding a
# queued job have a row. The sizes are fixed by those triggers: changing them takes a
# migration that rebuilds the triggers and this table.
QUEUE_BUCKET_SIZES = (64, 4096)
queue_buckets = Table(
    "queue_buckets",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("bucket", BigInteger, primary_key=True, autoincrement=False),
    Column("queued", Integer, nullable=False),
    # SQLite: rows stored in key order, so a sum over a range of buckets reads no rowid table.
    sqlite_with_rowid=False,
)

# An Idempotency-Key seen on a submit: a retry with the same key and body answers this job.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("job_id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# One webhook delivery per finished job that asked for one, written in the same transaction
# that ended the job, so a restart can never lose it.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("give_up_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("seq", SEQUENCE_TYPE, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("at", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=False),
    Index("ix_webhook_attempts_job_id", "job_id", "seq"),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("seq", SEQUENCE_TYPE, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("at", Float, nullable=False),
    Column("level", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_job_logs_job_id", "job_id", "seq"),
)

# One row per worker process, refreshed while it lives: what it serves and its memory.
workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("info", Text, nullable=False),
)

# Files uploaded with POST /v1/files, by key: retention deletes them, revocation disowns them,
# the admin view sums them.
uploads = Table(
    "uploads",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_uploads_created_at", "created_at"),
    Index("ix_uploads_key_id", "key_id"),
)

# The `limits` library's counters (retouch.jobs.rate_limits): one row per key and window.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_rate_limits_expires_at", "expires_at"),
)

# A named lease one process of a deployment holds at a time (the retention sweeper's).
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Secrets every process of a deployment shares, made once by whichever starts first: the
# secret that signs file URLs ("url_signing"), so any API process verifies any URL another
# one signed, and any worker recognises our own upload URLs.
service_secrets = Table(
    "service_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
