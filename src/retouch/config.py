"""Settings: command-line flags override RETOUCH_* environment variables, which override these
defaults. The defaults are the embedded setup: SQLite and a local folder in ./.retouch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from retouch.jobs.database import POSTGRES_MAX_OVERFLOW, POSTGRES_POOL_SIZE
from retouch.log_context import LogFormat

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETOUCH_", extra="ignore")

    data_dir: Path = Path(".retouch")
    database_url: str | None = Field(
        None,
        description="sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE; "
        "unset = the SQLite file retouch.db in the data dir",
    )
    database_pool_size: int = Field(
        default=POSTGRES_POOL_SIZE, ge=1, description="PostgreSQL connections a process keeps open"
    )
    database_pool_overflow: int = Field(
        default=POSTGRES_MAX_OVERFLOW,
        ge=0,
        description="more PostgreSQL connections a process opens under a burst",
    )
    database_start_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how long a starting process waits for a job database that does not "
        "answer (it may be restarting) before it gives up",
    )
    model: str | None = Field(
        None, description="Local directory or Hugging Face id of the weights; unset = preview"
    )
    config: Path | None = Field(None, description="TOML file of served endpoints (see README)")
    device: str | None = Field(None, description="Torch device for the worker, e.g. cuda:0")
    compile: bool | None = None
    attention_backend: str | None = None
    vae_tiling: bool | None = None
    cpu_offload: bool | None = None
    upscaler: Path | None = Field(
        None,
        description="Super-resolution weights (Real-ESRGAN family) for sizes above a "
        "model's ceiling; unset = Lanczos",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    api_processes: int = Field(
        1, ge=1, description="How many API processes `retouch serve` runs on its one port"
    )
    public_base_url: str | None = Field(
        None, description="Base of the absolute URLs we hand out, e.g. https://edit.example.com"
    )

    # Logs, on standard error.
    log_format: LogFormat = Field(
        "text", description="text: one line per record; json: one JSON object per line"
    )
    access_log: bool = Field(
        False, description="Log every HTTP request (logger retouch.access, level info)"
    )

    # Limits on what a client may send.
    max_body_bytes: int = 64 * MIB
    # Reading a request's line and headers, and its whole body, may take this long (408001).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    max_queued_jobs: int = 1000

    # Inputs fetched by the worker.
    fetch_allow: Annotated[tuple[str, ...], NoDecode] = ()
    fetch_max_bytes: int = 50 * MIB
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 20.0
    fetch_total_timeout: float = 60.0
    max_input_pixels: int = 50_000_000
    # Pixels of all of one request's inputs together (media/decode.py, PixelBudget).
    max_request_pixels: int = 100_000_000

    # Moderation.
    nsfw_classifier: str | None = Field(
        None,
        description="'package.module:factory' of another image classifier; unset = the "
        "bundled Yahoo Open-NSFW model",
    )

    # Jobs.
    lease_seconds: float = 30.0
    max_attempts: int = 3
    cancel_running: bool = Field(
        False, description="Let cancel interrupt a running job (an extension of the contract)"
    )

    # Outputs.
    url_ttl_seconds: int = 24 * 3600
    storage_url: str | None = Field(
        None,
        description="s3://BUCKET[/PREFIX] for outputs and uploads in an S3-compatible bucket; "
        "unset = the outputs folder in the data dir",
    )
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of a non-AWS S3 service, e.g. http://minio:9000"
    )
    s3_region: str | None = Field(None, description="The bucket's region; unset = us-east-1")
    s3_presign: bool = Field(
        False,
        description="Results carry the bucket's presigned URLs instead of ours (needs an s3:// "
        "RETOUCH_STORAGE_URL); uploads keep ours",
    )
    signing_secret: SecretStr | None = Field(
        None,
        description="64 hex characters that sign file URLs, on every process; unset = the "
        "one made once and kept in the database",
    )

    # Webhooks: a failing receiver is retried with growing pauses for this long.
    webhook_retry_seconds: float = 24 * 3600.0
    # One attempt (lookup, connect, send, answer) may take this long.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Pause after the first failed attempt; each later pause is `factor` times longer, up to
    # the maximum (jittered, as Standard Webhooks advises: 5 s, 30 s, 3 min, 18 min, 2 h, …).
    webhook_first_retry_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_factor: float = Field(default=6.0, ge=1)
    webhook_max_retry_interval_seconds: float = Field(default=2 * 3600.0, gt=0)
    # Deliveries sent at once by one API process.
    webhook_concurrency: int = Field(default=8, ge=1)

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _split_allow_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "nsfw_classifier",
        "attention_backend",
        "model",
        "database_url",
        "signing_secret",
        "storage_url",
        "s3_endpoint_url",
        "s3_region",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def database_path(self) -> Path:
        return self.data_dir / "retouch.db"

    @property
    def store_url(self) -> str:
        """The job store's database: RETOUCH_DATABASE_URL, or the SQLite file in the data dir."""
        return self.database_url or f"sqlite:///{self.database_path}"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
