"""Input of `google/nano-banana-2/edit`: the seed page's schema is the source of truth."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from retouch.contract.sizes import AspectRatio, Resolution

MAX_PROMPT_CHARS = 8000
MAX_URL_CHARS = 8192
MAX_IMAGES = 20
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

DEFAULT_PROMPT = (
    "Keep the subject identity unchanged, convert the background into a rainy neon cyberpunk "
    "street at night, cinematic lighting, high detail."
)


def _check_prompt(prompt: str) -> str:
    if not prompt.strip():
        raise ValueError("prompt must not be empty: describe the edit to make")
    return prompt


def _check_image_uri(uri: str) -> str:
    """Only http(s) URLs and data: URIs; everything else (file:, ftp:, bare paths) is refused
    here so a bad input fails at submit time instead of inside the worker."""
    if uri.startswith("data:"):
        header, comma, _ = uri.partition(",")
        if not comma:
            raise ValueError("data: URI has no ',' before its payload")
        media_type = header[5:].split(";")[0].strip().lower()
        if media_type and not media_type.startswith("image/"):
            raise ValueError(f"data: URI has media type {media_type!r}; use an image/* type")
        return uri
    if len(uri) > MAX_URL_CHARS:
        raise ValueError(f"URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError as error:
        raise ValueError(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http(s) URL or a data: URI")
    if not parts.hostname:
        raise ValueError("URL has no host")
    return uri


def _whole_number(value: object) -> object:
    """2.0 is the integer 2, as JSON Schema counts it (its `integer` admits a zero fraction);
    2.5, "2" and true stay refused by the strict model."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInteger = Annotated[int, BeforeValidator(_whole_number)]

ImageUri = Annotated[
    str,
    AfterValidator(_check_image_uri),
    Field(json_schema_extra={"format": "image_uri"}),
]


class NanoBananaEditInput(BaseModel):
    """The eleven fields of the contract, their bounds, enums and defaults; nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Input")

    prompt: Annotated[str, AfterValidator(_check_prompt)] = Field(
        title="Prompt",
        description="The prompt for the image edit.",
        max_length=MAX_PROMPT_CHARS,
        # What _check_prompt enforces, stated in the schema (not min_length: its message
        # would replace the one that says what to do).
        json_schema_extra={"default": DEFAULT_PROMPT, "minLength": 1, "pattern": r"\S"},
    )
    image_urls: list[ImageUri] = Field(
        title="Images",
        description="URLs (http, https or data:) of the images to edit; every one is used.",
        min_length=1,
        max_length=MAX_IMAGES,
    )
    num_images: JsonInteger = Field(1, ge=1, le=4, title="Number of images")
    seed: JsonInteger = Field(
        0, ge=INT64_MIN, le=INT64_MAX, title="Seed", description="Image k uses seed + k."
    )
    aspect_ratio: AspectRatio = Field(
        "auto",
        title="Aspect ratio (width:height)",
        description="auto takes the table ratio closest to the first image's.",
    )
    resolution: Resolution = Field("1K", title="Resolution")
    output_format: Literal["jpeg", "png", "webp"] = Field("png", title="Output format")
    safety_tolerance: Annotated[Literal[1, 2, 3, 4, 5, 6], BeforeValidator(_whole_number)] = Field(
        4, title="Safety tolerance", description="1 is the strictest, 6 the most permissive."
    )
    limit_generations: bool = Field(
        True,
        title="Limit generations",
        description="When true, each prompt round produces only one generation.",
    )
    enable_web_search: bool = Field(
        False,
        title="Enable web search",
        description="Use web search for up-to-date information while generating.",
    )
