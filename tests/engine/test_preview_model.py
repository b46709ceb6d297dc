"""The preview model: built offline and deterministically, with the real spatial factors,
cached, and rebuilt when the cache folder is incomplete."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from retouch.engine.preview import build_preview_pipeline, ensure_preview_model

from .helpers import load_pipeline


def _weights(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*.safetensors")}


def test_builds_a_real_klein_pipeline_offline(preview_dir: Path) -> None:
    index = json.loads((preview_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline"
    assert index["is_distilled"] is True
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    assert index["transformer"] == ["diffusers", "Flux2Transformer2DModel"]
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    size = sum(f.stat().st_size for f in preview_dir.rglob("*") if f.is_file())
    assert size < 1_000_000


def test_keeps_the_real_spatial_factors(preview_dir: Path) -> None:
    pipe = load_pipeline(preview_dir)
    assert pipe.vae_scale_factor == 8
    assert tuple(pipe.vae.config.patch_size) == (2, 2)
    assert pipe.transformer.config.patch_size == 1
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.latent_channels
    # A 1024² output is 4096 image tokens, as in the real model.
    latents, _ = pipe.prepare_latents(
        1, pipe.transformer.config.in_channels // 4, 1024, 1024, torch.float32, "cpu", None
    )
    assert latents.shape[1] == 4096


def test_chat_template_accepts_enable_thinking(preview_dir: Path) -> None:
    tokenizer = load_pipeline(preview_dir).tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "make it blue"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_build_is_deterministic_and_leaves_global_rng_alone(tmp_path: Path) -> None:
    before = torch.random.get_rng_state()
    build_preview_pipeline().save_pretrained(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    build_preview_pipeline().save_pretrained(tmp_path / "b")
    assert _weights(tmp_path / "a") == _weights(tmp_path / "b")


def test_second_ensure_reuses_the_cache(preview_dir: Path) -> None:
    mtimes = {f: f.stat().st_mtime_ns for f in preview_dir.rglob("*")}
    assert ensure_preview_model(preview_dir) == preview_dir
    assert {f: f.stat().st_mtime_ns for f in preview_dir.rglob("*")} == mtimes


def test_half_written_cache_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "models" / "preview"
    (target / "vae").mkdir(parents=True)
    (target / "model_index.json").write_text("{")  # a crash mid-copy, no marker
    ensure_preview_model(target)
    load_pipeline(target)
    assert not list(target.parent.glob(".*tmp*")), "no build leftovers"

    # A complete build whose weights were later damaged is rebuilt as well.
    weights = next(target.rglob("*.safetensors"))
    weights.write_bytes(b"")
    ensure_preview_model(target)
    assert weights.stat().st_size > 0
