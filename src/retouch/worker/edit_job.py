"""One edit job, start to finish: fetch and decode the inputs, size the output, run the
engine, resize to the table's size, encode and store. Pure of the queue: the runner owns
claiming, leases and finishing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from retouch.contract.bodies import Generation, ModelInfo, References
from retouch.contract.nano_banana_edit import NanoBananaEditInput
from retouch.contract.sizes import output_size
from retouch.engine.base import CancelCheck, EditCancelled, EditRequest, Engine, StepCallback
from retouch.engine.references import ReferencePlan, combine_references
from retouch.engine.upscale import Upscaler
from retouch.jobs.models import StoredOutput, StoredResult
from retouch.media.decode import PixelBudget, decode_image
from retouch.media.encode import CONTENT_TYPES, FILE_EXTENSIONS, encode_image, resize_exact
from retouch.media.errors import MediaError
from retouch.media.fetch import FetchConfig, fetch_bytes
from retouch.safety.moderation import POLICY_VIOLATION, Moderator, PolicyViolation, image_message
from retouch.storage.base import Storage, is_storage_full
from retouch.storage.own_files import own_file
from retouch.storage.signing import UrlSigner

log = logging.getLogger(__name__)


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
        """The time since the last lap (or the start) as `name`."""
        self.record(name, time.perf_counter() - self._started)

    def record(self, name: str, seconds: float) -> None:
        """`seconds` as `name`; the next lap starts now."""
        self.timings[name] = round(seconds, 4)
        self._started = time.perf_counter()


STORAGE_FULL = "storage_full"


def storage_full_failure(error: BaseException) -> JobFailure:
    """The job's failure when the disk of the files (or of the job database) is full."""
    return JobFailure(
        STORAGE_FULL,
        f"the server's storage is full, so the outputs could not be stored ({error}); none "
        "were kept. Submitting again later may work; the operator has to free space.",
    )


# While inputs download, the stop/cancel check runs this often.
CANCEL_CHECK_SECONDS = 0.1
UPLOAD_AGAIN = "upload it again (POST /v1/files) and submit the new URL"


async def read_input(url: str, tools: JobTools) -> bytes:
    """The bytes of one input. Our own signed file URLs (uploads, outputs) are read from
    storage: the public URL may be unreachable from this worker, and the address policy
    refuses loopback and private addresses. Any other URL is fetched."""
    own = own_file(url, tools.signer)
    if own is None:
        return await fetch_bytes(url, tools.fetch_config)
    if own.expired:
        raise MediaError(f"this file URL has expired: {UPLOAD_AGAIN}")
    try:
        return await asyncio.to_thread(tools.storage.read, own.name)
    except FileNotFoundError:
        raise MediaError(f"this file no longer exists on the server: {UPLOAD_AGAIN}") from None


async def _fetch_all(
    urls: list[str], tools: JobTools, should_cancel: Callable[[], bool]
) -> list[bytes | MediaError]:
    async def one(url: str) -> bytes | MediaError:
        try:
            return await read_input(url, tools)
        except MediaError as error:
            return error

    fetching = asyncio.gather(*(one(url) for url in urls))
    while True:
        done, _ = await asyncio.wait({fetching}, timeout=CANCEL_CHECK_SECONDS)
        if done:
            return list(fetching.result())
        if should_cancel():
            fetching.cancel()
            # Awaited, so asyncio logs no "exception was never retrieved" traceback.
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            raise EditCancelled()


def load_inputs(
    urls: list[str], tools: JobTools, should_cancel: Callable[[], bool]
) -> list[Image.Image]:
    """Every input fetched concurrently, then decoded; the first failure (in input order)
    fails the job with a message naming the input. Stops early (EditCancelled) when
    should_cancel says so, so a stopping worker is not held up by a slow download."""
    fetched = asyncio.run(_fetch_all(urls, tools, should_cancel))
    images: list[Image.Image] = []
    budget = PixelBudget(tools.max_request_pixels)
    for index, data in enumerate(fetched):
        try:
            if isinstance(data, MediaError):
                raise data
            images.append(decode_image(data, max_pixels=tools.max_input_pixels, budget=budget))
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
    return warnings


class JobReporter(Protocol):
    """Where a running job reports to: the runner turns these into store writes."""

    def on_step(self, step: int, total: int) -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...

    def should_cancel(self) -> bool: ...


@dataclass(frozen=True)
class JobTools:
    """What a worker lends each job of one endpoint."""

    engine: Engine
    storage: Storage
    signer: UrlSigner
    """Recognises our own signed file URLs among the inputs (read_input)."""
    fetch_config: FetchConfig
    max_input_pixels: int
    max_request_pixels: int
    """All of one request's inputs together."""
    upscaler: Upscaler
    moderator: Moderator


def model_info(engine: Engine) -> ModelInfo:
    """The engine as results and worker listings show it."""
    info = engine.info
    return ModelInfo(
        engine=info.engine,
        model=info.model,
        preview=info.preview,
        device=info.device,
        dtype=info.dtype,
    )


def finish_size(
    image: Image.Image, width: int, height: int, *, engine: Engine, upscaler: Upscaler
) -> tuple[Image.Image, str]:
    """Bring a generated image to the table's exact size, and say how: "none", "lanczos"
    (a resample by a few per cent, from rounding to the model's multiples) or the upscaler's
    name (the size is above the model's native ceiling)."""
    if image.size == (width, height):
        return image, "none"
    if width * height > engine.info.max_pixels:
        return upscaler.upscale(image, width, height), upscaler.name
    return resize_exact(image, width, height), "lanczos"


@dataclass
class PreparedEdit:
    """A job up to the engine: inputs fetched, decoded and moderated, references combined,
    sizes and seeds decided."""

    fields: NanoBananaEditInput
    images: list[Image.Image]
    plan: ReferencePlan
    ratio: str
    width: int
    height: int
    """The table's output size; the request's size is the one the model generates."""
    request: EditRequest
    timer: Timer


def prepare_edit(*, input: dict[str, Any], tools: JobTools, reporter: JobReporter) -> PreparedEdit:
    """The job's stages before the engine. Raises JobFailure, or EditCancelled when the
    reporter said stop."""
    engine = tools.engine
    fields = NanoBananaEditInput.model_validate(input)
    tolerance = fields.safety_tolerance
    timer = Timer()
    try:
        # The prompt first: a refused prompt costs no download.
        tools.moderator.check_prompt(fields.prompt, tolerance)
        images = load_inputs(fields.image_urls, tools, reporter.should_cancel)
        timer.lap("inputs_s")
        reporter.log(f"fetched and decoded {len(images)} input image(s)")
        tools.moderator.check_inputs(images, tolerance)
    except PolicyViolation as violation:
        raise JobFailure(POLICY_VIOLATION, violation.message) from None
    timer.lap("input_moderation_s")

    references, plan = combine_references(
        images,
        max_references=engine.info.max_references,
        reference_pixels=engine.info.reference_pixels,
    )
    if len(references) != len(images):
        reporter.log(
            f"{len(images)} inputs combined into {len(references)} references "
            f"({engine.info.engine} conditions on {engine.info.max_references} natively)"
        )
    ratio, (width, height) = output_size(fields.aspect_ratio, fields.resolution, images[0].size)
    generated_width, generated_height = engine.native_size(width, height)
    seeds = [fields.seed + offset for offset in range(fields.num_images)]
    reporter.log(
        f"generating {fields.num_images} image(s) at {generated_width}×{generated_height} "
        f"with {engine.info.engine} ({engine.info.model})"
    )
    request = EditRequest(fields.prompt, references, generated_width, generated_height, seeds)
    return PreparedEdit(fields, images, plan, ratio, width, height, request, timer)


ENGINE_ERRORS = (MemoryError, RuntimeError, ValueError)
"""What a model raises for a run it cannot do (out of memory, a shape it refuses): the job's
failure, not the worker's."""


def engine_failure(error: BaseException) -> JobFailure:
    return JobFailure("engine_error", f"the model failed: {error}")


def generate(
    engine: Engine,
    edits: list[PreparedEdit],
    on_step: StepCallback | None,
    should_cancel: CancelCheck | None,
) -> list[list[Image.Image] | JobFailure]:
    """Every edit's images from one engine.edit_batch call, or the failure that is each job's
    own: when a batch of several fails, its edits run again one by one, so that one job's
    failure (a size the model cannot take, memory) is not its neighbours'. Each edit's timer
    records the engine's time. Raises EditCancelled when should_cancel said stop."""
    began = time.perf_counter()
    outcomes: list[list[Image.Image] | JobFailure]
    try:
        outcomes = list(engine.edit_batch([edit.request for edit in edits], on_step, should_cancel))
    except ENGINE_ERRORS as error:
        if len(edits) == 1:
            outcomes = [engine_failure(error)]
        else:
            log.warning(
                "a batch of %d jobs failed (%s); running them one by one", len(edits), error
            )
            outcomes = []
            for edit in edits:
                try:
                    outcomes.append(engine.edit(edit.request, on_step, should_cancel))
                except ENGINE_ERRORS as alone:
                    outcomes.append(engine_failure(alone))
    seconds = time.perf_counter() - began
    for edit in edits:
        edit.timer.record("engine_s", seconds)
    return outcomes


def finish_edit(
    *,
    job_id: str,
    attempt_tag: str,
    edit: PreparedEdit,
    generated: list[Image.Image],
    tools: JobTools,
    reporter: JobReporter,
) -> StoredResult:
    """The job's stages after the engine: output moderation, the table's size, encode and
    store; returns the result to store. Output files are named per attempt so a worker that
    lost its lease can never overwrite the files of the one that took over. Raises JobFailure,
    or EditCancelled when the reporter said stop."""
    engine, fields, timer = tools.engine, edit.fields, edit.timer
    tolerance = fields.safety_tolerance
    width, height = edit.width, edit.height
    generated_width, generated_height = edit.request.width, edit.request.height
    seeds = edit.request.seeds
    # Withheld outputs are never resized, encoded or stored: no file, no URL.
    verdicts = tools.moderator.judge_outputs(generated, tolerance)
    withheld = [verdict.blocked for verdict in verdicts]
    timer.lap("output_moderation_s")
    if all(withheld):
        worst = max(verdicts, key=lambda verdict: verdict.score)
        raise JobFailure(
            POLICY_VIOLATION,
            image_message(
                f"output ({len(generated)} of {len(generated)} images withheld)", worst, tolerance
            ),
        )
    if any(withheld):
        reporter.log(f"{sum(withheld)} of {len(generated)} outputs withheld by moderation")
    kept = [
        (image, seed)
        for image, seed, hidden in zip(generated, seeds, withheld, strict=True)
        if not hidden
    ]
    finished = [
        (*finish_size(image, width, height, engine=engine, upscaler=tools.upscaler), seed)
        for image, seed in kept
    ]
    resize = finished[0][1]
    timer.lap("resize_s")
    warnings = input_warnings(fields, engine)
    if width * height > engine.info.max_pixels:
        warnings.append(
            f"{fields.resolution}: generated at {generated_width}×{generated_height} (the "
            f"model's native ceiling) and upscaled to {width}×{height} with {resize}."
        )
    if reporter.should_cancel():
        raise EditCancelled()
    outputs: list[StoredOutput] = []
    extension = FILE_EXTENSIONS[fields.output_format]
    encoding = storing = 0.0  # apart too, for the stage metrics
    try:
        for index, (image, _, seed) in enumerate(finished):
            began = time.perf_counter()
            data = encode_image(image, fields.output_format)
            encoded = time.perf_counter()
            name = f"{job_id}/{index}-{attempt_tag}.{extension}"
            tools.storage.put(name, data)
            encoding, storing = encoding + encoded - began, storing + time.perf_counter() - encoded
            outputs.append(
                StoredOutput(
                    file=name,
                    content_type=CONTENT_TYPES[fields.output_format],
                    size=len(data),
                    seed=seed,
                )
            )
    except BaseException as error:
        # A job that does not succeed leaves no files (a full disk on image 3 of 4, say).
        for output in outputs:
            tools.storage.delete(output.file)
        if is_storage_full(error):
            raise storage_full_failure(error) from error
        raise
    timer.lap("encode_store_s")
    timer.timings["encode_s"], timer.timings["store_s"] = round(encoding, 4), round(storing, 4)
    reporter.log(f"stored {len(outputs)} {fields.output_format} file(s) of {width}×{height}")

    return StoredResult(
        outputs=outputs,
        model=model_info(engine),
        generation=Generation(
            aspect_ratio=edit.ratio,
            width=width,
            height=height,
            generated_width=generated_width,
            generated_height=generated_height,
            resize=resize,
            seeds=seeds,
            input_sizes=[list(image.size) for image in edit.images],
        ),
        references=References.model_validate(edit.plan.as_dict()),
        has_nsfw_concepts=withheld,
        warnings=warnings,
        timings=timer.timings,
    )


def run_edit_job(
    *,
    job_id: str,
    attempt_tag: str,
    input: dict[str, Any],
    tools: JobTools,
    reporter: JobReporter,
) -> StoredResult:
    """One job alone, start to finish (the runner runs a batch through the same stages).
    Raises JobFailure, or EditCancelled when the reporter said stop."""
    edit = prepare_edit(input=input, tools=tools, reporter=reporter)
    if reporter.should_cancel():
        raise EditCancelled()
    (outcome,) = generate(tools.engine, [edit], reporter.on_step, reporter.should_cancel)
    if isinstance(outcome, JobFailure):
        raise outcome
    return finish_edit(
        job_id=job_id,
        attempt_tag=attempt_tag,
        edit=edit,
        generated=outcome,
        tools=tools,
        reporter=reporter,
    )
