"""Which endpoints this server serves, and with which engine, weights and options.

Each endpoint also has the id it answers to on the fal and Replicate surfaces
(retouch.api.fal, retouch.api.replicate): `fal = "…"` and `replicate = "owner/name"` in the
file, or by default the hosted ids of the same model for `google/nano-banana-2/edit`, and for
any other endpoint its own id on fal and `owner/rest-of-id` (slashes as dashes) on Replicate.

Read from a TOML file (`--config` / RETOUCH_CONFIG) when given; otherwise one endpoint,
`google/nano-banana-2/edit` on FLUX.2 [klein]. Environment and flags override the file:
RETOUCH_MODEL / --model sets the weights of the default endpoint, and the engine settings
(RETOUCH_DEVICE, RETOUCH_COMPILE, RETOUCH_ATTENTION_BACKEND, RETOUCH_VAE_TILING,
RETOUCH_CPU_OFFLOAD) apply to every endpoint.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from retouch.config import Settings
from retouch.contract.inputs import DEFAULT_ENDPOINT
from retouch.engine.options import EngineOptions
from retouch.engine.registry import ENGINE_KINDS

DEFAULT_ENGINE = "flux2-klein"
# Two or more segments (`owner/model/task`, RunComfy's `owner/model/variant/task`…), none empty.
ENDPOINT_ID = r"^[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)+$"
# Replicate's model ids are exactly `owner/name`.
REPLICATE_ID = r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$"
# The hosted APIs' ids of the model the default endpoint's contract comes from.
HOSTED_IDS: dict[str, tuple[str, str]] = {
    DEFAULT_ENDPOINT: ("fal-ai/nano-banana-2/edit", "google/nano-banana-2"),
}


class ConfigError(Exception):
    """The configuration file is wrong; the message names the file and the field."""


class _OptionsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str | None = None
    dtype: str | None = Field(default=None, pattern="^(bfloat16|float16|float32)$")
    compile: bool = False
    attention_backend: str | None = None
    vae_tiling: bool | None = None
    cpu_offload: bool = False
    steps: int | None = Field(default=None, ge=1, le=200)
    quantize: str | None = Field(default=None, pattern="^fp8$")
    batch_max: int = Field(default=1, ge=1, le=64)
    cache_mib: int | None = Field(default=None, ge=0)


class _EndpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=ENDPOINT_ID)]
    engine: str
    model: str | None = None
    fal: Annotated[str, StringConstraints(pattern=ENDPOINT_ID)] | None = None
    replicate: Annotated[str, StringConstraints(pattern=REPLICATE_ID)] | None = None
    options: _OptionsSpec = _OptionsSpec()

    @field_validator("id")
    @classmethod
    def _not_a_schema_url(cls, value: str) -> str:
        if value.endswith("/schema"):
            raise ValueError(f"{value!r} ends in /schema, the path of an endpoint's schema")
        return value


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[_EndpointSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Endpoint:
    id: str
    engine: str
    model: str | None
    """None: the engine's preview model (tiny random weights)."""
    options: EngineOptions
    fal_id: str = ""
    """The id it answers to under /fal/ (an app id of any depth)."""
    replicate_id: str = ""
    """The `owner/name` it answers to under /replicate/."""

    @property
    def preview(self) -> bool:
        return self.model is None


def _read_file(path: Path) -> list[_EndpointSpec]:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read the config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    try:
        return _ConfigFile.model_validate(raw).endpoints
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def _env_overrides(settings: Settings) -> dict[str, Any]:
    """Engine settings given by flag or environment, which win over the file."""
    overrides = {
        "device": settings.device,
        "compile": settings.compile,
        "attention_backend": settings.attention_backend,
        "vae_tiling": settings.vae_tiling,
        "cpu_offload": settings.cpu_offload,
        "quantize": settings.quantize,
        "batch_max": settings.batch_max,
        "cache_mib": settings.cache_mib,
    }
    return {name: value for name, value in overrides.items() if value is not None}


def _surface_ids(spec: _EndpointSpec) -> tuple[str, str]:
    """The endpoint's fal and Replicate ids: configured, hosted, or made from its own id."""
    hosted_fal, hosted_replicate = HOSTED_IDS.get(spec.id, (spec.id, ""))
    if not hosted_replicate:
        owner, _, rest = spec.id.partition("/")
        hosted_replicate = f"{owner}/{rest.replace('/', '-')}"
    return spec.fal or hosted_fal, spec.replicate or hosted_replicate


def _check_unique(endpoints: list[Endpoint]) -> None:
    """Each surface's ids name one endpoint each (an id on fal may also be another endpoint's
    own id there: fal resolves its own ids first, see retouch.api.fal)."""
    for surface, ids in (
        ("fal", [endpoint.fal_id for endpoint in endpoints]),
        ("replicate", [endpoint.replicate_id for endpoint in endpoints]),
    ):
        repeated = sorted({surface_id for surface_id in ids if ids.count(surface_id) > 1})
        if repeated:
            raise ConfigError(
                f'{surface} id {repeated[0]!r} names two endpoints: set `{surface} = "…"` '
                "on one of them"
            )


def load_endpoints(settings: Settings) -> list[Endpoint]:
    specs = (
        _read_file(settings.config)
        if settings.config
        else [_EndpointSpec(id=DEFAULT_ENDPOINT, engine=DEFAULT_ENGINE)]
    )
    seen: set[str] = set()
    endpoints = []
    overrides = _env_overrides(settings)
    for spec in specs:
        if spec.id in seen:
            raise ConfigError(f"endpoint {spec.id!r} is configured twice")
        seen.add(spec.id)
        if spec.engine not in ENGINE_KINDS:
            known = ", ".join(sorted(ENGINE_KINDS))
            raise ConfigError(f"endpoint {spec.id!r}: unknown engine {spec.engine!r} ({known})")
        model = spec.model
        if spec.id == DEFAULT_ENDPOINT and settings.model is not None:
            model = settings.model
        options = dataclasses.replace(EngineOptions(**spec.options.model_dump()), **overrides)
        fal_id, replicate_id = _surface_ids(spec)
        endpoints.append(
            Endpoint(
                id=spec.id,
                engine=spec.engine,
                model=model,
                options=options,
                fal_id=fal_id,
                replicate_id=replicate_id,
            )
        )
    _check_unique(endpoints)
    return endpoints
