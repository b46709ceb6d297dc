"""Settings: command-line flags override RETOUCH_* environment variables, which override these
defaults. The defaults are the embedded setup: SQLite and a local folder in ./.retouch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from retouch.jobs.database import POSTGRES_MAX_OVERFLOW, POSTGRES_POOL_SIZE
from retouch.jobs.rate_limits import check_rate
from retouch.log_context import LogFormat

MIB = 1024 * 1024
DAY = 24 * 3600.0

# A lifetime: seconds ("3600", "2.5"), or a number with a unit ("7d", "24h", "30m", "90s").
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([dhms]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def parse_duration(value: object, *, setting: str = "duration") -> float:
    """Seconds from a number or text like "7d", "24h", "30m", "90s" or "3600"; ValueError
    naming `setting` for anything else, zero or negative."""
    if isinstance(value, bool):
        raise ValueError(f"{setting}: expected seconds or a duration like 7d, 24h, 30m, 90s")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(
                f"{setting}: expected seconds or a duration like 7d, 24h, 30m, 90s, "
                f"not {str(value)!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not seconds > 0:
        raise ValueError(f"{setting}: must be more than 0 seconds, not {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A lifetime as a person reads it: "7 days", "24 hours", "30 minutes", "90 seconds"."""
    for unit, size in (("day", DAY), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    shown = int(seconds) if seconds == int(seconds) else round(seconds, 3)
    return f"{shown} second{'s' if shown != 1 else ''}"


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
    quantize: Literal["fp8"] | None = Field(
        None, description="fp8: the transformer's linear layers in FP8 (CUDA, compute 8.9+)"
    )
    batch_max: int | None = Field(
        None, ge=1, le=64, description="queued jobs of one endpoint and size run as one batch"
    )
    cache_mib: int | None = Field(
        None, ge=0, description="MiB of cached prompt embeddings and reference latents; 0 = off"
    )
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
    # HTTPS: both or neither (serve refuses one alone, and files that do not load, at start).
    ssl_certfile: Path | None = Field(
        None, description="PEM certificate (or chain) that `retouch serve` serves HTTPS with"
    )
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the certificate, unencrypted; unset = plain HTTP"
    )

    # Logs, on standard error.
    log_format: LogFormat = Field(
        "text", description="text: one line per record; json: one JSON object per line"
    )
    access_log: bool = Field(
        False, description="Log every HTTP request (logger retouch.access, level info)"
    )
    # Prometheus metrics (retouch.metrics): GET /metrics, and counting every request for it.
    metrics: bool = Field(True, description="Count requests and serve GET /metrics")
    metrics_token: SecretStr | None = Field(
        None, description="If set, GET /metrics needs `Authorization: Bearer <this>`"
    )

    # Limits on what a client may send.
    max_body_bytes: int = 64 * MIB
    # Reading a request's line and headers, and its whole body, may take this long (408001).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    max_queued_jobs: int = 1000
    # Per-key limits where a key sets none of its own (`retouch keys create/edit`): 429001.
    key_max_queued: int = Field(
        500, ge=0, description="Jobs one key may have queued at once (0: only the global cap)"
    )
    key_submit_rate: str = Field(
        "120/minute",
        description="Submits one key may make per window, e.g. 60/minute, 10/second (empty: "
        "no limit)",
    )
    key_max_running: int = Field(
        0, ge=0, description="Jobs of one key running at once, over all workers (0: no limit)"
    )

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
    drain_seconds: float = Field(
        60.0,
        description="On SIGTERM, how long a worker may go on with its running job before it "
        "puts the job back in the queue and exits",
    )
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

    # Retention (retouch.jobs.retention): how long a finished request's results and files,
    # and an upload, are kept; a key's own lifetimes override these.
    retain_results: float = Field(
        7 * DAY,
        description="How long a finished request's status, result and files are kept "
        "(seconds, or 7d, 24h, 30m, 90s)",
    )
    retain_uploads: float = Field(
        DAY, description="How long an uploaded file is kept (seconds, or 7d, 24h, 30m, 90s)"
    )
    retention_sweep_seconds: float = Field(
        60.0, gt=0, description="How often the API process deletes what has expired"
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

    @field_validator("key_submit_rate")
    @classmethod
    def _readable_rate(cls, value: str) -> str:
        return check_rate(value) if value.strip() else ""

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _split_allow_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("retain_results", "retain_uploads", mode="before")
    @classmethod
    def _lifetime(cls, value: object, info: ValidationInfo) -> float:
        return parse_duration(value, setting=f"RETOUCH_{str(info.field_name).upper()}")

    @field_validator(
        "nsfw_classifier",
        "attention_backend",
        "quantize",
        "model",
        "database_url",
        "signing_secret",
        "storage_url",
        "s3_endpoint_url",
        "s3_region",
        "ssl_certfile",
        "ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None or self.ssl_keyfile is not None

    @property
    def listen_url(self) -> str:
        """Where `retouch serve` answers: https:// with a certificate, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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
