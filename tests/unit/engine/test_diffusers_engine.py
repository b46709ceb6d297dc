"""The shared base: options (device, precision, speed levers), VAE tiling, warm-up, memory
figures and one edit at a time. Run on the klein preview; the levers are the same code for
every engine."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from retouch.contract.sizes import SIZE_TABLE
from retouch.engine.base import EditRequest
from retouch.engine.diffusers_engine import check_options
from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.options import EngineOptions

from .helpers import as_array, noise_image

REF = noise_image(200, 150)


def small(engine: Flux2KleinEngine, seeds: list[int] | None = None) -> EditRequest:
    return EditRequest("make it blue", [REF], 256, 256, seeds or [1])


@pytest.mark.parametrize("backend", ["flash_hub", "_flash_3_hub", "sage_hub", "FLASH_HUB"])
def test_hub_attention_backends_are_refused_before_loading(backend: str) -> None:
    with pytest.raises(ValueError, match="Hub"):
        Flux2KleinEngine.load("/nonexistent", options=EngineOptions(attention_backend=backend))


def test_unknown_attention_backends_are_refused_before_loading() -> None:
    with pytest.raises(ValueError, match=r"unknown attention backend 'flash4'.*_native_cudnn"):
        Flux2KleinEngine.load("/nonexistent", options=EngineOptions(attention_backend="flash4"))


@pytest.mark.parametrize(
    "options", [EngineOptions(dtype="float8"), EngineOptions(steps=0)], ids=["dtype", "steps"]
)
def test_impossible_options_are_refused(options: EngineOptions) -> None:
    with pytest.raises(ValueError):
        check_options(options)


def test_options_apply(preview_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = EngineOptions(
        device="cpu",
        steps=2,
        attention_backend="_native_math",
        vae_tiling=True,
        compile=True,  # CUDA only: ignored here, with a warning
        cpu_offload=True,  # likewise
    )
    with caplog.at_level(logging.WARNING, logger="retouch.engine.diffusers_engine"):
        engine = Flux2KleinEngine.load(str(preview_dir), options=options, preview=True)
    assert "compile ignored" in caplog.text and "cpu_offload ignored" in caplog.text
    assert engine.info.default_steps == 2
    assert engine.info.extra | {"pipeline": "", "license": ""} == {
        "pipeline": "",
        "license": "",
        "compile": "off",
        "attention_backend": "_native_math",
        "cpu_offload": "off",
        "vae_tiling": "on",
    }
    calls: list[tuple[int, int]] = []
    (image,) = engine.edit(small(engine), on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert image.size == (256, 256)
    assert engine.pipeline.vae.use_tiling  # forced on, even for a small output
    backends = {
        module.processor._attention_backend.value
        for module in engine.pipeline.transformer.modules()
        if hasattr(getattr(module, "processor", None), "_attention_backend")
    }
    assert backends == {"_native_math"}
    # ...and only they: diffusers would also make it every other model's default.
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    assert _AttentionBackendRegistry._active_backend.value == "native"


def test_an_engine_around_a_pipeline_built_in_memory() -> None:
    from retouch.engine.preview_flux2_klein import build_preview_pipeline

    engine = Flux2KleinEngine.from_pipeline(
        build_preview_pipeline(), model="in-memory", options=EngineOptions(device="cpu", steps=1)
    )
    assert (engine.info.model, engine.info.preview, engine.info.default_steps) == (
        "in-memory",
        False,
        1,
    )
    (image,) = engine.edit(small(engine))
    assert image.size == (256, 256)


def test_warm_up_sizes_are_the_deduplicated_native_table_sizes(engine: Flux2KleinEngine) -> None:
    sizes = engine.warm_up_sizes()
    table = [size for by_resolution in SIZE_TABLE.values() for size in by_resolution.values()]
    assert set(sizes) == {engine.native_size(*size) for size in table}
    assert len(sizes) == len(set(sizes)) < len(table)  # 2K and 4K share buckets above 4 MP
    assert all(engine.native_size(*size) == size for size in sizes)


def test_warm_up_runs_one_step_per_size(engine: Flux2KleinEngine) -> None:
    batches: list[int] = []
    transformer = engine.pipeline.transformer
    handle = transformer.register_forward_hook(
        lambda module, args, kwargs, output: batches.append(kwargs["hidden_states"].shape[0]),
        with_kwargs=True,
    )
    try:
        assert engine.warm_up([(256, 256), (320, 192)]) == [(256, 256), (320, 192)]
    finally:
        handle.remove()
    assert batches == [2, 1]  # one step each; two outputs first, to compile the batch dim


def test_concurrent_edits_run_one_at_a_time_with_the_same_results(
    engine: Flux2KleinEngine,
) -> None:
    expected = [as_array(engine.edit(small(engine, [seed]))[0]) for seed in (1, 2)]
    results: dict[int, bytes] = {}

    def run(seed: int) -> None:
        results[seed] = as_array(engine.edit(small(engine, [seed]))[0]).tobytes()

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[1], results[2]] == [e.tobytes() for e in expected]
