"""The Qwen-Image-Edit preview: real classes and spatial factors, built offline and
deterministically, the pipeline's call options, preview-only reference sizes, and a save/load
round trip despite the processor that from_pretrained cannot rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from retouch.engine.preview import ensure_preview_model
from retouch.engine.preview_qwen_image_edit import (
    PREVIEW_VERSION,
    PROCESSOR_DIR,
    build_preview_pipeline,
    load_preview,
    load_preview_pipeline,
    save_preview,
)

PROMPT = "make the sky a deep blue"


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def edit(
    pipe: Any,
    references: list[Image.Image] | None = None,
    *,
    seeds: tuple[int, ...] = (0,),
    width: int = 256,
    height: int = 256,
    steps: int = 2,
    **kwargs: Any,
) -> list[Image.Image]:
    """Run the pipeline as the engine runs the real model: true CFG with a " " negative prompt,
    one CPU generator per output, explicit size."""
    output = pipe(
        image=references or [noise_image(640, 480)],
        prompt=PROMPT,
        negative_prompt=" ",
        true_cfg_scale=4.0,
        width=width,
        height=height,
        num_inference_steps=steps,
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        **kwargs,
    )
    images: list[Image.Image] = output.images
    return images


class _Stop(Exception):
    """Ends a pipeline call early, once a spy has seen what it wanted."""


def test_builds_the_real_classes_with_the_real_spatial_factors(pipe: Any, saved: Path) -> None:
    from diffusers import QwenImageEditPlusPipeline

    assert issubclass(type(pipe), QwenImageEditPlusPipeline)
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderKLQwenImage"]
    assert index["transformer"] == ["diffusers", "QwenImageTransformer2DModel"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["processor"] == [None, None]  # rebuilt by load_preview
    assert (saved / PROCESSOR_DIR / "preprocessor_config.json").is_file()
    size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())
    assert size < 1_000_000

    assert pipe.vae_scale_factor == 8
    assert pipe.transformer.config.patch_size == 2
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.z_dim
    # A 1024² output is 4096 image tokens, as in the real model.
    latents, _ = pipe.prepare_latents(
        None, 1, pipe.vae.config.z_dim, 1024, 1024, torch.float32, "cpu", None
    )
    assert latents.shape[1] == 4096
    # The pipeline drops its template's first 64 tokens: the tokenizer must make more.
    system = pipe.prompt_template_encode.split("{}")[0]
    assert len(pipe.tokenizer(system)["input_ids"]) > pipe.prompt_template_encode_start_idx


@pytest.mark.parametrize(("width", "height", "count"), [(512, 512, 1), (1024, 768, 2)])
def test_output_count_and_exact_size(pipe: Any, width: int, height: int, count: int) -> None:
    images = edit(pipe, seeds=tuple(range(count)), width=width, height=height)
    assert [image.size for image in images] == [(width, height)] * count
    assert all(image.mode == "RGB" for image in images)


def test_three_references_of_different_sizes(pipe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[tuple[int, ...]] = []
    encode = pipe.vae.encode

    def spy(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        encoded.append(tuple(sample.shape))
        return encode(sample, *args, **kwargs)

    monkeypatch.setattr(pipe.vae, "encode", spy)
    references = [noise_image(640, 480, 1), noise_image(300, 500, 2), noise_image(1024, 256, 3)]
    images = edit(pipe, references, seeds=(0, 1), width=384, height=256)
    assert [image.size for image in images] == [(384, 256)] * 2
    # Each reference is encoded once, at its own aspect ratio (preview reference sizes).
    assert [shape[-2:] for shape in encoded] == [(96, 160), (160, 96), (64, 256)]


def test_same_seed_same_pixels_and_per_image_seeds(pipe: Any) -> None:
    first = edit(pipe, seeds=(7, 8))
    again = edit(pipe, seeds=(7, 8))
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(pixels(first[0]), pixels(first[1]))
    # Image k of a batch is what a single run with seed k gives (up to float rounding).
    alone = edit(pipe, seeds=(8,))[0]
    assert np.abs(pixels(first[1]) - pixels(alone)).max() <= 2


def test_callback_runs_after_every_step_with_true_cfg(pipe: Any) -> None:
    steps: list[int] = []
    passes: list[int] = []

    def on_step_end(p: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        steps.append(step)
        assert p.num_timesteps == 3
        assert set(tensors) == {"latents"}
        return {}

    hook = pipe.transformer.register_forward_hook(lambda *_: passes.append(1))
    try:
        edit(pipe, steps=3, callback_on_step_end=on_step_end)
    finally:
        hook.remove()
    assert steps == [0, 1, 2]
    assert len(passes) == 6  # true CFG: a conditional and an unconditional pass per step


def test_save_and_load_round_trip(pipe: Any, saved: Path, tmp_path: Path) -> None:
    expected = edit(pipe, seeds=(3,))[0]
    loaded = load_preview(saved)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is type(pipe)
    assert np.array_equal(pixels(edit(loaded, seeds=(3,))[0]), pixels(expected))

    # save_preview on a loaded preview, then the engine's hook with an explicit dtype.
    save_preview(loaded, tmp_path / "again")
    reloaded = load_preview_pipeline(tmp_path / "again", torch.float32)
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.transformer.dtype == torch.float32
    assert np.array_equal(pixels(edit(reloaded, seeds=(3,))[0]), pixels(expected))


def test_generic_preview_cache_builds_and_reloads_it(pipe: Any, tmp_path: Path) -> None:
    folder = ensure_preview_model(
        tmp_path / "preview-qwen-image-edit", build_preview_pipeline, version=PREVIEW_VERSION
    )
    loaded = load_preview_pipeline(folder)
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(pixels(edit(loaded)[0]), pixels(edit(pipe)[0]))


def test_build_is_deterministic_and_leaves_global_rng_alone(pipe: Any) -> None:
    before = torch.random.get_rng_state()
    other = build_preview_pipeline()
    assert torch.equal(torch.random.get_rng_state(), before)
    for name in ("vae", "text_encoder", "transformer"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(other, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[key], theirs[key]) for key in mine)


def _reference_sizes(pipe: Any, monkeypatch: pytest.MonkeyPatch, run: Callable[[], Any]) -> Any:
    """(VAE input size, vision grid) of a one-reference call, stopped at the VAE encode."""
    seen: dict[str, Any] = {}

    def grid(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen["grid"] = tuple(kwargs["image_grid_thw"][0].tolist())

    def stop(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen["vae"] = tuple(sample.shape[-2:])
        raise _Stop

    hook = pipe.text_encoder.register_forward_pre_hook(grid, with_kwargs=True)
    monkeypatch.setattr(pipe.vae, "encode", stop)
    try:
        with pytest.raises(_Stop):
            run()
    finally:
        hook.remove()
        monkeypatch.undo()
    return seen["vae"], seen["grid"]


def test_small_reference_sizes_apply_to_preview_pipelines_only(
    pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import QwenImageEditPlusPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as module

    reference = noise_image(1024, 1024)

    def call(p: Any) -> Callable[[], Any]:
        return lambda: p(
            image=[reference], prompt=PROMPT, true_cfg_scale=1.0, height=512, width=512
        )

    preview = _reference_sizes(pipe, monkeypatch, call(pipe))
    assert preview == ((128, 128), (1, 10, 10))  # 128² VAE input; 140² vision input, 14 px patches
    # The same components in the plain class keep the real sizes: nothing global was patched.
    plain: Any = QwenImageEditPlusPipeline(**pipe.components)  # type: ignore[no-untyped-call]
    plain.set_progress_bar_config(disable=True)
    real = _reference_sizes(plain, monkeypatch, call(plain))
    assert real == ((1024, 1024), (1, 28, 28))  # 1 MP VAE input; 392² vision input
    assert (module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE) == (1024 * 1024, 384 * 384)


def test_importing_the_module_does_not_import_torch() -> None:
    code = (
        "import sys, retouch.engine.preview_qwen_image_edit\n"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
