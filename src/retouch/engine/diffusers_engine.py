"""The shared base of the engines that run a diffusers pipeline.

One resident pipeline per engine, one edit at a time. The base owns everything the engines
have in common: loading with EngineOptions (device, precision, the GPU speed levers), the
size rules, per-image seeds, progress, cancelling, VAE tiling, warm-up and memory figures.
A subclass declares its limits as class attributes and supplies only what differs: the
pipeline's call arguments, reference preparation and its preview builder module.

torch and diffusers are imported inside the methods that need them, so importing an engine
module (e.g. for its limits) stays cheap and torch-free.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from PIL import Image

from retouch.engine.base import CancelCheck, EditCancelled, EditRequest, EngineInfo, StepCallback
from retouch.engine.options import EngineOptions
from retouch.engine.sizing import fit_reference, fit_size

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VAE_TILING_PIXELS = 2 * 1024 * 1024
"""With vae_tiling None, outputs above this many pixels are decoded in tiles, unless the engine
runs on a CUDA device with enough free memory for the whole decode (see VAE_DECODE_BYTES)."""
VAE_DECODE_BYTES = 3 * 1024
"""GPU memory an untiled VAE decode may add per output pixel at 16-bit precision (twice that at
32-bit). Measured on an H100: FLUX.2's VAE decoding 2048x2048 in bf16 peaked 9.55 GiB above the
resident weights, 2.3 KiB per pixel; this adds a third for safety. Tiling there cost 0.33 s."""
SEED_MODULUS = 2**64
"""torch.Generator.manual_seed takes 0..2**64-1; any Python int maps into that range."""
WARM_UP_PROMPT = "warm-up"
_WARM_UP_GRAY = (128, 128, 128)
_DTYPES = ("bfloat16", "float16", "float32")
_MIB = 1024 * 1024


class DiffusersEngine:
    """A resident diffusers pipeline behind the Engine protocol; one edit runs at a time (a
    pipeline keeps run state on itself, e.g. its interrupt flag and step count)."""

    # What a subclass declares. Class attributes, so describe_kind() reads them without torch.
    KIND: ClassVar[str]
    """Engine family, e.g. "flux2-klein"; EngineInfo.engine and the registry key."""
    PIPELINE: ClassVar[str]
    """Name of the diffusers pipeline class, e.g. "Flux2KleinPipeline"."""
    DEFAULT_MODEL: ClassVar[str]
    """Hugging Face id of the weights an operator would usually configure."""
    LICENSE: ClassVar[str]
    PREVIEW_MODULE: ClassVar[str]
    """Module with build_preview_pipeline() (and optionally PREVIEW_VERSION and
    load_preview_pipeline(folder, dtype) for pipelines that cannot use from_pretrained)."""
    MAX_PIXELS: ClassVar[int]
    SIZE_MULTIPLE: ClassVar[int] = 16
    """VAE 8x times the transformer's 2x2 patches, for every pipeline here."""
    MIN_SIDE: ClassVar[int] = 64
    MAX_REFERENCES: ClassVar[int]
    REFERENCE_PIXELS: ClassVar[int] = 1024 * 1024
    DEFAULT_STEPS: ClassVar[int]
    PREVIEW_STEPS: ClassVar[int | None] = None
    """Steps of the preview model when the options set none (None: DEFAULT_STEPS). Its output
    is noise whatever the count; fewer steps keep tests and demos fast."""
    REFERENCE_MIN_SIDE: ClassVar[int] = 64
    REFERENCE_MAX_ASPECT: ClassVar[float] = 8.0
    NEEDS_REFERENCE: ClassVar[bool] = False
    """True when the pipeline cannot run without a reference image."""
    BATCHES_REQUESTS: ClassVar[bool] = False
    """True when edit_batch runs requests together (options.batch_max may exceed 1)."""

    info: EngineInfo

    def __init__(self, pipe: Any, info: EngineInfo, options: EngineOptions) -> None:
        self._pipe = pipe
        self.info = info
        self._options = options
        self._steps = info.default_steps
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Any:
        """The resident diffusers pipeline (for benchmarks and diagnostics; edit() is the API)."""
        return self._pipe

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls, source: str, *, options: EngineOptions | None = None, preview: bool = False
    ) -> Self:
        """Load from a local folder or a Hugging Face id (from the local HF cache when offline)
        and apply the options (see from_pipeline)."""
        options = options or EngineOptions()
        check_options(options)  # before loading: a bad option should not cost a load
        cls.check_batching(options)
        if options.attention_backend is not None:
            _check_attention_backend(options.attention_backend)
        device = _torch_device(options.device)
        dtype = _torch_dtype(options.dtype, on_cuda=device.type == "cuda")
        pipe = cls._load_pipeline(source, dtype=dtype, preview=preview)
        model = "preview" if preview else source
        return cls.from_pipeline(pipe, model=model, options=options, preview=preview)

    @classmethod
    def from_pipeline(
        cls,
        pipe: Any,
        *,
        model: str,
        options: EngineOptions | None = None,
        preview: bool = False,
        warm_up: bool = True,
    ) -> Self:
        """An engine around an already built pipeline (load() uses it; so does a benchmark
        with random full-size weights). Applies the options: precision, device or CPU offload,
        attention backend, regional compile and, with compile on (CUDA) and warm_up, a warm-up
        of every size bucket, so no request waits for a compile."""
        options = options or EngineOptions()
        check_options(options)
        cls.check_batching(options)
        device = _torch_device(options.device)
        on_cuda = device.type == "cuda"
        dtype = _torch_dtype(options.dtype, on_cuda=on_cuda)
        pipe.set_progress_bar_config(disable=True)
        if pipe.dtype != dtype:
            pipe.to(dtype=dtype)
        if options.attention_backend is not None:
            _set_attention_backend(pipe.transformer, options.attention_backend)
        if options.cpu_offload and on_cuda:
            # Hooks move each model to the GPU when it runs and back after: fits small GPUs.
            pipe.enable_model_cpu_offload(device=device)
        else:
            if options.cpu_offload:
                log.warning("cpu_offload ignored: the engine runs on %s, not CUDA", device)
            pipe.to(device)
        compiled = options.compile and on_cuda
        if compiled:
            # Regional compile: the repeated blocks compile once and are reused by every
            # block, at a fraction of a whole-model compile's time.
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
            _compile_group_norms(pipe.vae)
        elif options.compile:
            log.warning("compile ignored: regional torch.compile is enabled on CUDA only")
        steps = options.steps or (cls.PREVIEW_STEPS if preview else None) or cls.DEFAULT_STEPS
        info = EngineInfo(
            engine=cls.KIND,
            model=model,
            preview=preview,
            max_pixels=cls.MAX_PIXELS,
            size_multiple=cls.SIZE_MULTIPLE,
            min_side=cls.MIN_SIDE,
            max_references=cls.MAX_REFERENCES,
            reference_pixels=cls.REFERENCE_PIXELS,
            default_steps=steps,
            device=str(device),
            dtype=str(dtype).removeprefix("torch."),
            extra={
                "pipeline": cls.PIPELINE,
                "license": cls.LICENSE,
                "compile": "on" if compiled else "off",
                "attention_backend": options.attention_backend or "default",
                "cpu_offload": "on" if options.cpu_offload and on_cuda else "off",
                "vae_tiling": {None: "auto", True: "on", False: "off"}[options.vae_tiling],
            },
        )
        engine = cls(pipe, info, options)
        if compiled and warm_up:
            engine.warm_up()
        return engine

    @classmethod
    def check_batching(cls, options: EngineOptions) -> None:
        """Refuse batch_max > 1 for an engine that runs one request at a time, at start-up
        rather than silently: the operator asked for a speed-up this engine does not give."""
        if options.batch_max > 1 and not cls.BATCHES_REQUESTS:
            raise ValueError(
                f"batch_max: the {cls.KIND} engine runs one request at a time; set batch_max"
                " to 1 (or remove it) for this endpoint"
            )

    @classmethod
    def load_preview(cls, cache_dir: Path, *, options: EngineOptions | None = None) -> Self:
        """The preview model (tiny random weights, real classes), built offline into cache_dir
        on first use and loaded from there."""
        from retouch.engine.preview import ensure_preview_model

        module = cls.preview_module()
        folder = ensure_preview_model(
            cache_dir, module.build_preview_pipeline, version=getattr(module, "PREVIEW_VERSION", 1)
        )
        return cls.load(str(folder), options=options, preview=True)

    @classmethod
    def preview_module(cls) -> ModuleType:
        return importlib.import_module(cls.PREVIEW_MODULE)

    @classmethod
    def _load_pipeline(cls, source: str, *, dtype: torch.dtype, preview: bool) -> Any:
        if preview:
            loader = getattr(cls.preview_module(), "load_preview_pipeline", None)
            if loader is not None:
                return loader(Path(source), dtype)
        pipeline_class = getattr(importlib.import_module("diffusers"), cls.PIPELINE)
        return pipeline_class.from_pretrained(source, dtype=dtype)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The class-level facts about this engine (no torch), for GET /v1/models."""
        return {
            "engine": cls.KIND,
            "pipeline": cls.PIPELINE,
            "default_model": cls.DEFAULT_MODEL,
            "license": cls.LICENSE,
            "max_pixels": cls.MAX_PIXELS,
            "size_multiple": cls.SIZE_MULTIPLE,
            "min_side": cls.MIN_SIDE,
            "max_references": cls.MAX_REFERENCES,
            "reference_pixels": cls.REFERENCE_PIXELS,
            "default_steps": cls.DEFAULT_STEPS,
        }

    # --- the Engine protocol ---------------------------------------------------------------

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        return fit_size(
            width,
            height,
            max_pixels=self.info.max_pixels,
            multiple=self.info.size_multiple,
            min_side=self.info.min_side,
        )

    def edit(
        self,
        request: EditRequest,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[Image.Image]:
        return self.edit_batch([request], on_step, should_cancel)[0]

    def edit_batch(
        self,
        requests: list[EditRequest],
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[list[Image.Image]]:
        return self._run_batch(requests, on_step, should_cancel, steps=self._steps)

    def _run_batch(
        self,
        requests: list[EditRequest],
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        *,
        steps: int,
    ) -> list[list[Image.Image]]:
        """One pipeline call per request; an engine that batches requests (BATCHES_REQUESTS)
        overrides this."""
        return [self._run(request, on_step, should_cancel, steps=steps) for request in requests]

    def _run(
        self,
        request: EditRequest,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        *,
        steps: int,
    ) -> list[Image.Image]:
        import torch

        self._check_request(request)
        references = self.prepare_references(request.images)

        def on_step_end(
            pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
        ) -> dict[str, Any]:
            if on_step is not None:
                on_step(step + 1, pipe.num_timesteps)
            if should_cancel is not None and should_cancel():
                # Raising (rather than the pipeline's interrupt flag) also skips the VAE decode.
                raise EditCancelled()
            return {}

        with self._lock:
            if should_cancel is not None and should_cancel():
                raise EditCancelled()
            self._set_vae_tiling(request.width, request.height, len(request.seeds))
            # CPU generators: diffusers draws the noise on the CPU and moves it, so a seed gives
            # the same starting noise on every device. One generator per output = per-image seeds.
            generators = [
                torch.Generator("cpu").manual_seed(seed % SEED_MODULUS) for seed in request.seeds
            ]
            try:
                output = self._pipe(
                    **self.call_arguments(request, references),
                    prompt=request.prompt,
                    num_inference_steps=steps,
                    num_images_per_prompt=len(request.seeds),
                    generator=generators,
                    output_type="pil",
                    callback_on_step_end=on_step_end,
                    callback_on_step_end_tensor_inputs=[],
                )
            except BaseException:
                # An aborted run skips the pipeline's own cleanup: put offloaded models back on
                # the CPU so the next run starts from the usual memory.
                self._pipe.maybe_free_model_hooks()
                raise
        images: list[Image.Image] = [image.convert("RGB") for image in output.images]
        wanted = (request.width, request.height)
        if len(images) != len(request.seeds) or any(image.size != wanted for image in images):
            raise RuntimeError(f"pipeline returned {[i.size for i in images]}, wanted {wanted}")
        return images

    # --- what subclasses supply ------------------------------------------------------------

    def call_arguments(self, request: EditRequest, references: list[Image.Image]) -> dict[str, Any]:
        """The pipeline's keyword arguments besides prompt, steps, outputs, generators, output
        type and callback: references, size, guidance."""
        raise NotImplementedError

    def prepare_references(self, images: list[Image.Image]) -> list[Image.Image]:
        """Make each reference acceptable to the pipeline, changing as little as possible."""
        return [
            fit_reference(
                image, min_side=self.REFERENCE_MIN_SIDE, max_aspect=self.REFERENCE_MAX_ASPECT
            )
            for image in images
        ]

    # --- speed and health ------------------------------------------------------------------

    def warm_up_sizes(self) -> list[tuple[int, int]]:
        """The size buckets requests use: the native size of every entry of the contract's
        size table, without duplicates (sizes above the ceiling share a bucket)."""
        from retouch.contract.sizes import SIZE_TABLE

        sizes = {
            self.native_size(width, height)
            for by_resolution in SIZE_TABLE.values()
            for width, height in by_resolution.values()
        }
        return sorted(sizes, key=lambda size: (size[0] * size[1], size))

    def warm_up(self, sizes: Iterable[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Run one tiny one-step edit per size bucket (default: warm_up_sizes()) so that a
        compiled transformer has seen every shape before the first request; one step, since
        every step runs the same shapes. The first bucket also runs with two outputs, so the
        batch dimension is compiled as dynamic before a num_images > 1 request needs it.
        Returns the sizes run."""
        done: list[tuple[int, int]] = []
        for width, height in self.warm_up_sizes() if sizes is None else sizes:
            started = time.perf_counter()
            reference = Image.new("RGB", (width, height), _WARM_UP_GRAY)
            seeds = [0] if done else [0, 1]
            request = EditRequest(WARM_UP_PROMPT, [reference], width, height, seeds)
            self._run_batch([request], None, None, steps=1)
            done.append((width, height))
            log.info(
                "warmed up %s at %dx%d in %.1f s",
                self.info.engine,
                width,
                height,
                time.perf_counter() - started,
            )
        return done

    # --- internals -------------------------------------------------------------------------

    def _check_request(self, request: EditRequest) -> None:
        """Pipelines silently floor odd sizes; refuse them so outputs are exactly the size."""
        if not request.seeds:
            raise ValueError("at least one seed is needed")
        width, height = request.width, request.height
        if (width, height) != self.native_size(width, height):
            raise ValueError(
                f"{width}x{height} is not a native size of {self.info.engine} (multiples of"
                f" {self.info.size_multiple}, sides >= {self.info.min_side}, at most"
                f" {self.info.max_pixels} pixels)"
            )
        count = len(request.images)
        if count > self.info.max_references:
            raise ValueError(
                f"{self.info.engine} conditions on at most {self.info.max_references}"
                f" reference(s), got {count}: combine them first (retouch.engine.references)"
            )
        if count == 0 and self.NEEDS_REFERENCE:
            raise ValueError(f"{self.info.engine} needs at least one reference image")

    def _set_vae_tiling(self, width: int, height: int, count: int = 1) -> None:
        tiled = self._options.vae_tiling
        if tiled is None:
            pixels = width * height
            tiled = pixels > VAE_TILING_PIXELS and not self._untiled_decode_fits(pixels * count)
        vae = self._pipe.vae
        if tiled:
            vae.enable_tiling()
        else:
            vae.disable_tiling()

    def _untiled_decode_fits(self, pixels: int) -> bool:
        """Whether decoding `pixels` output pixels in one piece fits the free memory of the
        engine's CUDA device (what the driver has free plus what torch holds unused). False off
        CUDA and with CPU offload, where tiling stays the rule above VAE_TILING_PIXELS."""
        import torch

        device = torch.device(self.info.device)
        if device.type != "cuda" or self._options.cpu_offload:
            return False
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        itemsize: int = self._pipe.vae.dtype.itemsize
        return pixels * VAE_DECODE_BYTES * max(1, itemsize // 2) <= free


def _compile_group_norms(vae: Any) -> None:
    """Run the VAE's GroupNorm layers through one compiled function. On CUDA, torch's own
    GroupNorm reduces each group in a single thread block, 32 blocks for the usual 32 groups,
    which leaves most of a large GPU idle; compiled, the reduction is split across the GPU. On
    an H100 this took FLUX.2's VAE decode from 91 to 55 ms at 1024x1024 and from 422 to 272 ms at
    2048x2048, and its encode of a 1024x1024 reference from 50 to 31 ms.

    Compiling the modules themselves would do nothing (torch.compile skips torch's own code as
    an entry point), so the function that calls group_norm lives here. One set of dynamic-shape
    graphs must serve every layer and size: see _call_group_norm. Not fullgraph, so that past
    the recompile limit torch would fall back to eager GroupNorm rather than fail the edit."""
    import torch

    compiled = torch.compile(_group_norm, dynamic=True)
    for module in vae.modules():
        if isinstance(module, torch.nn.GroupNorm) and "forward" not in vars(module):
            module.forward = functools.partial(_call_group_norm, compiled, module)  # type: ignore[method-assign]


def _call_group_norm(compiled: Any, module: Any, x: Any) -> Any:
    """Weights detached: torch keeps parameters' shapes static, which would compile a graph per
    channel count. Duck sizing off: it would specialise a graph to sizes that happen to be equal
    (a square image, a side equal to a channel count). What is left is a graph per layout (4-D
    convolution features, strided 4-D, 3-D attention input) and batch (1, or more): 6 for every
    size and batch tried, under the recompile limit of 8."""
    # A config module: patch() is added at import time, unknown to type checkers.
    fx_config: Any = importlib.import_module("torch.fx.experimental._config")
    weight = None if module.weight is None else module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    with fx_config.patch(use_duck_shape=False):
        return compiled(x, weight, bias, module.num_groups, module.eps)


def _group_norm(x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
    import torch.nn.functional as F

    return F.group_norm(x, num_groups, weight, bias, eps)


def check_options(options: EngineOptions) -> None:
    """Refuse options that can never work. Pure (no torch): configuration code can call it;
    loading calls it, and checks the attention backend's name against diffusers, before any
    weights are read."""
    backend = options.attention_backend
    if backend is not None and backend.lower().endswith("_hub"):
        raise ValueError(
            f"attention backend {backend!r} downloads kernels from the Hugging Face Hub at run"
            " time, which Retouch never does; pick a local one such as '_native_cudnn',"
            " 'flash' or '_flash_3'"
        )
    if options.dtype is not None and options.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {options.dtype!r}")
    if options.quantize is not None:
        raise ValueError(
            f"quantize: {options.quantize!r} is not available in this version; remove it"
        )
    if options.steps is not None and options.steps < 1:
        raise ValueError(f"steps must be at least 1, got {options.steps}")


def _check_attention_backend(name: str) -> None:
    """Refuse a name diffusers does not know before any weights are loaded (diffusers itself
    would only say so afterwards)."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = {backend.value for backend in AttentionBackendName}
    if name.lower() not in known:
        local = sorted(backend for backend in known if not backend.endswith("_hub"))
        raise ValueError(f"unknown attention backend {name!r}; diffusers knows {', '.join(local)}")


def _set_attention_backend(transformer: Any, name: str) -> None:
    """Give the transformer's attention processors this backend, and only them: diffusers'
    set_attention_backend also makes it the process-wide default, which would switch every
    other engine of a multi-engine worker too (and reset_attention_backend does not undo it)."""
    from diffusers.models import attention_dispatch

    registry = getattr(attention_dispatch, "_AttentionBackendRegistry", None)
    previous = getattr(registry, "_active_backend", None)
    transformer.set_attention_backend(name)
    if registry is not None and previous is not None:
        registry.set_active_backend(previous)


def _torch_device(name: str | None) -> torch.device:
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _torch_dtype(name: str | None, *, on_cuda: bool) -> torch.dtype:
    import torch

    # bf16 is what these models are released in; CPU bf16 matmuls are slow or missing.
    name = name or ("bfloat16" if on_cuda else "float32")
    dtype: torch.dtype = getattr(torch, name)
    return dtype
