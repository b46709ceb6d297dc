"""FLUX.2 [klein] (4B and 9B) through diffusers' Flux2KleinPipeline: every input image is a
reference. Importing this module does not import torch.

The engine runs the pipeline's own components (text encoder, VAE, transformer, scheduler, and
its helpers for ids, packing and timesteps) in a loop of its own rather than through
Flux2KleinPipeline.__call__, which cannot do three things this engine does:
- batch requests: the pipeline conditions every image of a call on one prompt's reference set,
  repeated; here each image of a batch has its own prompt embeddings and reference latents;
- reuse conditioning: prompt embeddings and reference latents come from a ConditioningCache;
- time its stages (text, encode, steps, decode) for the benchmark.
For one request the loop makes the same calls as __call__, so the images are the same bit for
bit (tests/unit/engine/test_flux2_batching.py checks it on the preview model).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from retouch.engine.base import CancelCheck, EditCancelled, EditRequest, EngineInfo, StepCallback
from retouch.engine.conditioning_cache import DEFAULT_CACHE_MIB, ConditioningCache, image_key
from retouch.engine.diffusers_engine import SEED_MODULUS, DiffusersEngine
from retouch.engine.options import EngineOptions

if TYPE_CHECKING:
    import torch

DEFAULT_TEXT_LAYERS = (9, 18, 27)
"""Hidden layers of Qwen3 that the real model stacks into its text embedding."""
MAX_SEQUENCE_LENGTH = 512
"""The pipeline's default: every prompt is padded to 512 tokens."""
STAGES = ("text", "encode", "steps", "decode", "host")
"""The keys of Flux2KleinEngine.stage_seconds; host is the rest of the call."""
_MIB = 1024 * 1024


class Flux2KleinEngine(DiffusersEngine):
    KIND = "flux2-klein"
    PIPELINE = "Flux2KleinPipeline"
    DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-4B"
    LICENSE = "Apache-2.0 (klein 4B); FLUX Non-Commercial License (klein 9B)"
    PREVIEW_MODULE = "retouch.engine.preview_flux2_klein"
    MAX_PIXELS = 4 * 1024 * 1024
    """klein generates up to ~4 MP natively; 2048x2048 fits exactly."""
    MAX_REFERENCES = 4
    """The pipeline takes any number, each ~1 MP reference adding ~4096 tokens; Black Forest
    Labs advise up to 4."""
    REFERENCE_PIXELS = 1024 * 1024
    """The pipeline shrinks each reference to at most ~1 MP."""
    DEFAULT_STEPS = 4
    """The distilled klein checkpoints are trained for 4 steps."""
    REFERENCE_MIN_SIDE = 64
    REFERENCE_MAX_ASPECT = 8.0
    """The pipeline rejects references with a side under 64 px or an aspect above 8:1."""

    BATCHES_REQUESTS = True

    def __init__(self, pipe: Any, info: EngineInfo, options: EngineOptions) -> None:
        super().__init__(pipe, info, options)
        self._text_layers = _text_layers(pipe)
        _trim_text_encoder(pipe.text_encoder, max(self._text_layers) + 1)
        _rowwise_vector_products(pipe.transformer)
        mib = DEFAULT_CACHE_MIB if options.cache_mib is None else options.cache_mib
        self.cache = ConditioningCache(mib * _MIB)
        """Prompt embeddings by prompt, reference latents by the reference's pixels."""
        self.time_stages = False
        """True: wait for the GPU at each stage's end, so stage_seconds are true on CUDA (the
        benchmark's setting; it costs a synchronisation per stage)."""
        self.stage_seconds: dict[str, float] = {}
        """Seconds of each of STAGES in the last call."""

    def warm_up(self, sizes: Iterable[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        done = super().warm_up(sizes)
        self.cache.clear()  # the warm-up's prompt and gray references are no one's
        return done

    def _run_batch(
        self,
        requests: list[EditRequest],
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
        *,
        steps: int,
    ) -> list[list[Image.Image]]:
        import torch

        for request in requests:
            self._check_request(request)
        references = [self.prepare_references(request.images) for request in requests]
        with self._lock:
            if should_cancel is not None and should_cancel():
                raise EditCancelled()
            clock = _StageClock(self._synchronize if self.time_stages else None)
            try:
                with torch.no_grad():
                    images = self._generate(
                        requests, references, steps, clock, on_step, should_cancel
                    )
            finally:
                # As the pipeline does; an aborted run must also put offloaded models back.
                self._pipe.maybe_free_model_hooks()
            self.stage_seconds = clock.finish()
        for request, outputs in zip(requests, images, strict=True):
            wanted = (request.width, request.height)
            if len(outputs) != len(request.seeds) or any(i.size != wanted for i in outputs):
                raise RuntimeError(
                    f"pipeline returned {[i.size for i in outputs]}, wanted {wanted}"
                )
        return images

    # --- the loop --------------------------------------------------------------------------

    def _generate(
        self,
        requests: list[EditRequest],
        references: list[list[Image.Image]],
        steps: int,
        clock: _StageClock,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
    ) -> list[list[Image.Image]]:
        """Conditioning for every request, then one denoising loop per group of requests whose
        tokens line up (same size, same reference shapes), then the decode of every image."""
        with clock.stage("text"):
            embeddings = [self._prompt_embeddings(request.prompt) for request in requests]
        with clock.stage("encode"):
            latents = [[self._reference_latents(image) for image in refs] for refs in references]
        conditions = [
            _Condition(index, request, embedding, refs)
            for index, (request, embedding, refs) in enumerate(
                zip(requests, embeddings, latents, strict=True)
            )
        ]
        groups: dict[tuple[Any, ...], list[_Condition]] = {}
        for condition in conditions:
            groups.setdefault(condition.layout, []).append(condition)
        total = steps * len(groups)
        images: list[list[Image.Image]] = [[] for _ in requests]
        for number, group in enumerate(groups.values()):

            def step_done(step: int, done_before: int = number * steps) -> None:
                if on_step is not None:
                    on_step(done_before + step, total)
                if should_cancel is not None and should_cancel():
                    raise EditCancelled()

            with clock.stage("steps"):
                denoised = self._denoise(group, steps, step_done)
            with clock.stage("decode"):
                decoded = self._decode(denoised, group[0].request)
            for condition in group:
                count = len(condition.request.seeds)
                images[condition.index], decoded = decoded[:count], decoded[count:]
        return images

    def _prompt_embeddings(self, prompt: str) -> torch.Tensor:
        """[1, 512, joint dim], as the pipeline's encode_prompt computes them; cached."""

        def encode() -> torch.Tensor:
            embeddings, _ = self._pipe.encode_prompt(
                prompt=prompt,
                device=self._pipe._execution_device,
                num_images_per_prompt=1,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
                text_encoder_out_layers=self._text_layers,
            )
            result: torch.Tensor = embeddings
            return result

        return self.cache.get_or_compute(("prompt", prompt, self._text_layers), encode)

    def _reference_latents(self, image: Image.Image) -> torch.Tensor:
        """[1, C, h, w]: the reference resized and cropped as the pipeline does, VAE-encoded,
        patchified and normalised; cached by the reference's pixels."""
        from diffusers.utils.torch_utils import get_module_execution_device

        pipe = self._pipe

        def encode() -> torch.Tensor:
            processor = pipe.image_processor
            processor.check_image_input(image)
            resized = image
            if image.width * image.height > self.REFERENCE_PIXELS:
                resized = processor._resize_to_target_area(image, self.REFERENCE_PIXELS)
            multiple = pipe.vae_scale_factor * 2
            width = resized.width // multiple * multiple
            height = resized.height // multiple * multiple
            pixels = processor.preprocess(resized, height=height, width=width, resize_mode="crop")
            pixels = pixels.to(device=get_module_execution_device(pipe.vae), dtype=pipe.vae.dtype)
            latent: torch.Tensor = pipe._encode_vae_image(image=pixels, generator=None)
            return latent

        return self.cache.get_or_compute(("reference", image_key(image)), encode)

    def _denoise(
        self, group: list[_Condition], steps: int, step_done: Callable[[int], None]
    ) -> torch.Tensor:
        """The pipeline's denoising loop over every image of the group at once: its noise from
        one CPU generator per seed, each image under its own request's conditioning."""
        import numpy as np
        import torch
        from diffusers.pipelines.flux2.pipeline_flux2_klein import (
            compute_empirical_mu,
            retrieve_timesteps,
        )

        pipe, transformer = self._pipe, self._pipe.transformer
        device = pipe._execution_device
        first = group[0].request
        counts = [len(condition.request.seeds) for condition in group]
        prompt_embeds = torch.cat(
            [c.prompt.expand(n, -1, -1) for c, n in zip(group, counts, strict=True)]
        )
        text_ids = pipe._prepare_text_ids(prompt_embeds).to(device)
        generators = [
            torch.Generator("cpu").manual_seed(seed % SEED_MODULUS)
            for condition in group
            for seed in condition.request.seeds
        ]
        latents, latent_ids = pipe.prepare_latents(
            batch_size=len(generators),
            num_latents_channels=transformer.config.in_channels // 4,
            height=first.height,
            width=first.width,
            dtype=prompt_embeds.dtype,
            device=device,
            generator=generators,
            latents=None,
        )
        image_latents = None
        model_ids = latent_ids
        if group[0].references:
            packed = [
                torch.cat([pipe._pack_latents(r).squeeze(0) for r in c.references]).unsqueeze(0)
                for c in group
            ]
            image_latents = torch.cat(
                [p.expand(n, -1, -1) for p, n in zip(packed, counts, strict=True)]
            ).to(device)
            reference_ids = pipe._prepare_image_ids(list(group[0].references))
            reference_ids = reference_ids.repeat(len(generators), 1, 1).to(device)
            # Joined once here rather than at every step, as the pipeline does.
            model_ids = torch.cat([latent_ids, reference_ids], dim=1)

        scheduler = pipe.scheduler
        sigmas = None
        if not getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = np.linspace(1.0, 1 / steps, steps).tolist()
        mu = compute_empirical_mu(image_seq_len=latents.shape[1], num_steps=steps)
        timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=mu)
        scheduler.set_begin_index(0)
        for index, timestep in enumerate(timesteps):
            model_input = (
                latents if image_latents is None else torch.cat([latents, image_latents], 1)
            )
            with transformer.cache_context("cond"):
                noise = transformer(
                    hidden_states=model_input.to(transformer.dtype),
                    timestep=timestep.expand(latents.shape[0]).to(latents.dtype) / 1000,
                    guidance=None,
                    encoder_hidden_states=prompt_embeds,
                    txt_ids=text_ids,
                    img_ids=model_ids,
                    joint_attention_kwargs=None,
                    return_dict=False,
                )[0]
            noise = noise[:, : latents.size(1) :]
            latents = scheduler.step(noise, timestep, latents, return_dict=False)[0]
            step_done(index + 1)
        result: torch.Tensor = pipe._unpack_latents_with_ids(
            latents,
            latent_ids,
            first.height // (pipe.vae_scale_factor * 2),
            first.width // (pipe.vae_scale_factor * 2),
        )
        return result

    def _decode(self, latents: torch.Tensor, request: EditRequest) -> list[Image.Image]:
        """Every image of the batch, one VAE decode each: a decode's kernels (and so its last
        bits) would vary with the batch size, and one image at a time bounds its memory."""
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        pipe, vae = self._pipe, self._pipe.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        latents = latents * std.to(latents.device, latents.dtype) + mean
        latents = pipe._unpatchify_latents(latents).to(get_module_execution_device(vae))
        self._set_vae_tiling(request.width, request.height)
        images: list[Image.Image] = []
        for index in range(latents.shape[0]):
            pixels = vae.decode(latents[index : index + 1], return_dict=False)[0]
            images.extend(pipe.image_processor.postprocess(pixels, output_type="pil"))
        return images

    def _synchronize(self) -> None:
        import torch

        device = torch.device(self.info.device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Condition:
    """One request of a batch with its conditioning."""

    index: int
    """Its place in the batch's requests."""
    request: EditRequest
    prompt: Any
    """Prompt embeddings, [1, 512, joint dim]."""
    references: list[Any]
    """Reference latents, [1, C, h, w] each."""

    @property
    def layout(self) -> tuple[Any, ...]:
        """Requests of one layout batch together: their tokens line up one to one, and the
        transformer takes one set of position ids for the whole batch."""
        shapes = tuple(tuple(reference.shape) for reference in self.references)
        return self.request.width, self.request.height, shapes


class _StageClock:
    """Wall seconds per stage of one call; `synchronize` (if any) runs at each stage's ends,
    so that on CUDA a stage's figure includes its kernels."""

    def __init__(self, synchronize: Callable[[], None] | None) -> None:
        self._synchronize = synchronize or (lambda: None)
        self._started = time.perf_counter()
        self._seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._synchronize()
        began = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self._seconds[name] += time.perf_counter() - began

    def finish(self) -> dict[str, float]:
        total = time.perf_counter() - self._started
        self._seconds["host"] = max(0.0, total - sum(self._seconds.values()))
        return {name: round(seconds, 6) for name, seconds in self._seconds.items()}


def _text_layers(pipe: Any) -> tuple[int, ...]:
    """Which text-encoder hidden layers to stack: the real model's, or for a shallower encoder
    (the preview) as many evenly spaced layers as the transformer's text width expects."""
    depth: int = pipe.text_encoder.config.num_hidden_layers
    count = pipe.transformer.config.joint_attention_dim // pipe.text_encoder.config.hidden_size
    if count == len(DEFAULT_TEXT_LAYERS) and max(DEFAULT_TEXT_LAYERS) <= depth:
        return DEFAULT_TEXT_LAYERS
    if not 0 < count <= depth:
        raise ValueError(f"cannot pick {count} text layers from an encoder of depth {depth}")
    return tuple(depth * (i + 1) // count for i in range(count))


def _trim_text_encoder(text_encoder: Any, depth: int) -> None:
    """Drop the text encoder's decoder layers past `depth`: only the hidden states of the layers
    in call_arguments are read, and hidden state k (k < depth) does not depend on later layers,
    so the embeddings are unchanged. For klein that is 28 of Qwen3's 36 layers: 8 layers less to
    run per prompt and about 1.6 GB less memory for the 4B. A no-op when nothing is past it or
    the encoder is not laid out as expected."""
    config = text_encoder.config
    layers = getattr(getattr(text_encoder, "model", None), "layers", None)
    if layers is None or len(layers) != config.num_hidden_layers or len(layers) <= depth:
        return
    text_encoder.model.layers = layers[:depth]
    config.num_hidden_layers = depth
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        config.layer_types = list(layer_types)[:depth]


_BLOCKS = ("transformer_blocks.", "single_transformer_blocks.")


def _rowwise_vector_products(transformer: Any) -> None:
    """Make the transformer's per-image vector products (the timestep embedding, the
    modulations, the output norm's) take one row at a time. A CPU BLAS computes a one-row
    product with another kernel than a several-row one, so in a batch each image's vectors would
    differ in their last bits from its run alone, and so would its output; row by row, a batch
    of requests gives every image exactly its lone output. The token products (3-D inputs, inside
    the blocks) are left alone: they are the same in a batch. A few small extra products per
    step."""
    import torch

    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.startswith(_BLOCKS):
            module.forward = functools.partial(_rowwise, module.forward)  # type: ignore[method-assign]


def _rowwise(forward: Callable[[Any], Any], x: Any) -> Any:
    import torch

    if x.dim() != 2 or x.shape[0] == 1:
        return forward(x)
    return torch.cat([forward(x[row : row + 1]) for row in range(x.shape[0])])
