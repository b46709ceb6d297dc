"""The preview models: built offline and deterministically, with the real classes and spatial
factors, cached, and rebuilt when the cache folder is incomplete or another builder's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from retouch.engine import preview_flux1_kontext, preview_flux2_klein
from retouch.engine.preview import ensure_preview_model
from retouch.engine.registry import preview_dirname

from .helpers import load_pipeline


def _weights(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*.safetensors")}


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_builds_a_real_klein_pipeline_offline(preview_dir: Path) -> None:
    index = json.loads((preview_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline"
    assert index["is_distilled"] is True
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    assert index["transformer"] == ["diffusers", "Flux2Transformer2DModel"]
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert _size(preview_dir) < 1_000_000


def test_klein_keeps_the_real_spatial_factors(preview_dir: Path) -> None:
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


def test_klein_chat_template_accepts_enable_thinking(preview_dir: Path) -> None:
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


def test_builds_a_real_kontext_pipeline_offline(models_dir: Path) -> None:
    folder = ensure_preview_model(
        models_dir / preview_dirname("flux1-kontext"),
        preview_flux1_kontext.build_preview_pipeline,
        version=preview_flux1_kontext.PREVIEW_VERSION,
    )
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "FluxKontextPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    assert _size(folder) < 1_000_000

    pipe = load_pipeline(folder, "FluxKontextPipeline")
    assert pipe.vae_scale_factor == 8
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.latent_channels
    assert pipe.transformer.config.guidance_embeds is True  # guidance-distilled, as [dev]
    latents, *_ = pipe.prepare_latents(None, 1, 4, 1024, 1024, torch.float32, "cpu", None)
    assert latents.shape[1] == 4096
    # The tokenizers survive save/load and tokenize a prompt into known tokens (CLIP's unknown
    # token is its end-of-text one, so only the tokens between the specials are checked).
    clip_ids = pipe.tokenizer("Make the sky purple!")["input_ids"]
    assert (
        clip_ids[0] == pipe.tokenizer.bos_token_id and clip_ids[-1] == pipe.tokenizer.eos_token_id
    )
    assert pipe.tokenizer.unk_token_id not in clip_ids[1:-1] and len(clip_ids) > 10
    t5_ids = pipe.tokenizer_2("Make the sky purple!")["input_ids"]
    assert pipe.tokenizer_2.unk_token_id not in t5_ids and len(t5_ids) > 10
    assert pipe.tokenizer.model_max_length == 77


def test_builds_are_deterministic_and_leave_global_rng_alone(tmp_path: Path) -> None:
    for build in (
        preview_flux2_klein.build_preview_pipeline,
        preview_flux1_kontext.build_preview_pipeline,
    ):
        before = torch.random.get_rng_state()
        build().save_pretrained(tmp_path / "a")
        assert torch.equal(torch.random.get_rng_state(), before)
        build().save_pretrained(tmp_path / "b")
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


def test_another_builders_or_versions_cache_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "preview"
    ensure_preview_model(target)  # klein's
    kontext = preview_flux1_kontext.build_preview_pipeline
    ensure_preview_model(target, kontext, version=1)
    assert json.loads((target / "model_index.json").read_text())["_class_name"] == (
        "FluxKontextPipeline"
    )
    mtime = (target / "model_index.json").stat().st_mtime_ns
    ensure_preview_model(target, kontext, version=1)
    assert (target / "model_index.json").stat().st_mtime_ns == mtime
    ensure_preview_model(target, kontext, version=2)
    assert (target / "model_index.json").stat().st_mtime_ns != mtime
