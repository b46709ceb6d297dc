"""One edit job, start to finish: fetch and decode the inputs, size the output, run the
engine, resize to the table's size, encode and store. Pure of the queue: the runner owns
claiming, leases and finishing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from retouch.contract.nano_banana_edit import NanoBananaEditInput
from retouch.contract.sizes import output_size
from retouch.engine.base import CancelCheck, EditRequest, Engine, StepCallback
from retouch.media.decode import decode_image
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS, encode_image, resize_exact
from retouch.media.errors import MediaError
from retouch.media.fetch import FetchConfig, fetch_bytes
from retouch.storage.local import LocalStorage


class JobFailure(Exception):
    """The job cannot succeed; `code` and `message` are shown to the user as they are."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Timer:
    timings: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._started, 4)
        self._started = now


async def _fetch_all(urls: list[str], config: FetchConfig) -> list[bytes | MediaError]:
    async def one(url: str) -> bytes | MediaError:
        try:
            return await fetch_bytes(url, config)
        except MediaError as error:
            return error

    return list(await asyncio.gather(*(one(url) for url in urls)))


def load_inputs(urls: list[str], config: FetchConfig, max_pixels: int) -> list[Image.Image]:
    """Every input fetched concurrently, then decoded; the first failure (in input order)
    fails the job with a message naming the input."""
    fetched = asyncio.run(_fetch_all(urls, config))
    images: list[Image.Image] = []
    for index, data in enumerate(fetched):
        try:
            if isinstance(data, MediaError):
                raise data
            images.append(decode_image(data, max_pixels=max_pixels))
        except MediaError as error:
            raise JobFailure(error.code, f"image_urls[{index}]: {error.reason}") from None
    return images


def input_warnings(fields: NanoBananaEditInput, engine: Engine) -> list[str]:
    """What the request asked for that this engine cannot do, said instead of ignored."""
    warnings: list[str] = []
    if engine.info.preview:
        warnings.append(
            "preview model: tiny random weights produced this output; it is noise, not an "
            "edit. The operator must configure real weights (--model)."
        )
    if fields.enable_web_search:
        warnings.append(
            f"enable_web_search: the {engine.info.engine} engine has no web search; the "
            "prompt was used as written."
        )
    if not fields.limit_generations:
        warnings.append(
            "limit_generations=false: this engine makes exactly num_images images per "
            "request either way."
        )
    warnings.append(
        f"safety_tolerance={fields.safety_tolerance}: content moderation is not implemented "
        "in this version of Retouch; no moderation was applied."
    )
    return warnings


def run_edit_job(
    *,
    job_id: str,
    attempt_tag: str,
    input: dict[str, Any],
    engine: Engine,
    storage: LocalStorage,
    fetch_config: FetchConfig,
    max_input_pixels: int,
    on_step: StepCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> dict[str, Any]:
    """Run the job; returns the result to store. Output files are named per attempt so a
    worker that lost its lease can never overwrite the files of the one that took over.
    Raises JobFailure, or EditCancelled when should_cancel said stop."""
    fields = NanoBananaEditInput.model_validate(input)
    timer = Timer()
    images = load_inputs(fields.image_urls, fetch_config, max_input_pixels)
    timer.lap("inputs_s")

    ratio, (width, height) = output_size(fields.aspect_ratio, fields.resolution, images[0].size)
    generated_width, generated_height = engine.native_size(width, height)
    seeds = [fields.seed + offset for offset in range(fields.num_images)]
    try:
        generated = engine.edit(
            EditRequest(
                prompt=fields.prompt,
                images=images,
                width=generated_width,
                height=generated_height,
                seeds=seeds,
            ),
            on_step=on_step,
            should_cancel=should_cancel,
        )
    except (MemoryError, RuntimeError, ValueError) as error:
        raise JobFailure("engine_error", f"the model failed: {error}") from error
    timer.lap("engine_s")

    resize = "none" if (generated_width, generated_height) == (width, height) else "lanczos"
    warnings = input_warnings(fields, engine)
    if resize != "none" and width * height > engine.info.max_pixels:
        warnings.append(
            f"{fields.resolution}: generated at {generated_width}×{generated_height} (the "
            f"model's native ceiling) and upscaled with Lanczos to {width}×{height}; "
            "no detail was added by a super-resolution model."
        )
    outputs = []
    extension = FILE_EXTENSIONS[fields.output_format]
    for index, (image, seed) in enumerate(zip(generated, seeds, strict=True)):
        data = encode_image(resize_exact(image, width, height), fields.output_format)
        name = f"{job_id}/{index}-{attempt_tag}.{extension}"
        storage.put(name, data)
        outputs.append(
            {
                "file": name,
                "content_type": CONTENT_TYPES[fields.output_format],
                "bytes": len(data),
                "seed": seed,
            }
        )
    timer.lap("encode_store_s")

    return {
        "outputs": outputs,
        "model": {
            "engine": engine.info.engine,
            "model": engine.info.model,
            "preview": engine.info.preview,
            "device": engine.info.device,
            "dtype": engine.info.dtype,
        },
        "generation": {
            "aspect_ratio": ratio,
            "width": width,
            "height": height,
            "generated_width": generated_width,
            "generated_height": generated_height,
            "resize": resize,
            "seeds": seeds,
            "input_sizes": [list(image.size) for image in images],
        },
        "warnings": warnings,
        "timings": timer.timings,
    }
