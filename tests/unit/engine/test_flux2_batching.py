"""FLUX.2 [klein]'s own loop, batches of requests and cached conditioning, on the preview model
on the CPU: each must give the very bytes of the plain path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from retouch.engine.base import EditCancelled, EditRequest
from retouch.engine.flux2_klein import STAGES, Flux2KleinEngine
from retouch.engine.options import EngineOptions

from .helpers import load_pipeline, noise_image

CPU = EngineOptions(device="cpu")


def _bytes(images: list[list[Image.Image]]) -> list[list[bytes]]:
    return [[image.tobytes() for image in outputs] for outputs in images]


def _engine(preview_dir: Path, **options: Any) -> Flux2KleinEngine:
    return Flux2KleinEngine.load(
        str(preview_dir), options=EngineOptions(device="cpu", **options), preview=True
    )


# Two layouts (one 320x256 reference, or that one and a 256x256), two sizes, different prompts
# and seeds, one request with two images.
WIDE, SQUARE = noise_image(320, 256, seed=1), noise_image(256, 256, seed=2)
REQUESTS = [
    EditRequest("a red barn", [WIDE], 256, 256, [7]),
    EditRequest("a dog on the moon", [SQUARE], 256, 256, [1, 2]),
    EditRequest("two of them", [WIDE, SQUARE], 256, 256, [3]),
    EditRequest("a lighthouse", [SQUARE], 256, 256, [5]),
    EditRequest("taller", [WIDE], 256, 320, [9]),
]


def test_one_request_is_the_pipelines_own_output(
    engine: Flux2KleinEngine, preview_dir: Path
) -> None:
    """The engine's loop makes the calls Flux2KleinPipeline.__call__ makes."""
    pipe = load_pipeline(preview_dir)
    pipe.set_progress_bar_config(disable=True)
    request = REQUESTS[0]
    references = engine.prepare_references(request.images)
    (ours,) = engine.edit(request)
    (theirs,) = pipe(
        prompt=request.prompt,
        image=references,
        width=request.width,
        height=request.height,
        num_inference_steps=engine.info.default_steps,
        generator=[torch.Generator("cpu").manual_seed(7)],
        text_encoder_out_layers=engine._text_layers,
        guidance_scale=1.0,
    ).images
    assert ours.tobytes() == theirs.convert("RGB").tobytes()


def test_a_batch_gives_each_request_its_lone_output(engine: Flux2KleinEngine) -> None:
    alone = [engine.edit(request) for request in REQUESTS]
    together = engine.edit_batch(REQUESTS)
    assert _bytes(together) == _bytes(alone)
    assert [len(images) for images in together] == [1, 2, 1, 1, 1]
    # Different prompts and references do give different images (the test could fail).
    assert len({outputs[0].tobytes() for outputs in together[:4]}) == 4


def test_a_batch_runs_one_loop_per_layout(engine: Flux2KleinEngine) -> None:
    """Requests batch only where their tokens line up: REQUESTS has 4 layouts, so 4 loops, and
    progress counts the steps of all of them, in order, to the end."""
    steps: list[tuple[int, int]] = []
    engine.edit_batch(REQUESTS, on_step=lambda done, total: steps.append((done, total)))
    loops = 4  # (256x256, wide), (256x256, square), (256x256, wide + square), (256x320, wide)
    total = engine.info.default_steps * loops
    assert steps == [(done, total) for done in range(1, total + 1)]
    assert set(engine.stage_seconds) == set(STAGES)


def test_cancelling_stops_the_whole_batch(engine: Flux2KleinEngine) -> None:
    calls: list[int] = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(EditCancelled):
        engine.edit_batch(REQUESTS, should_cancel=should_cancel)
    assert engine.edit_batch(REQUESTS[:1])  # the engine runs on afterwards


def test_the_cache_changes_no_byte_and_skips_the_encoders(preview_dir: Path) -> None:
    cached, uncached = _engine(preview_dir), _engine(preview_dir, cache_mib=0)
    encodes: list[str] = []
    for name, module in (("text", cached.pipeline.text_encoder), ("vae", cached.pipeline.vae)):
        module.register_forward_hook(lambda *_, name=name: encodes.append(name))
    cached.pipeline.vae.encode = _counted(cached.pipeline.vae.encode, encodes, "encode")

    first = [cached.edit(request) for request in REQUESTS]
    assert encodes.count("encode") == 2  # the two distinct references
    texts = encodes.count("text")
    assert texts == 5  # the five prompts
    encodes.clear()
    again = [cached.edit(request) for request in REQUESTS]  # every prompt and reference cached
    assert "text" not in encodes and "encode" not in encodes
    assert cached.cache.hits >= 10
    assert _bytes(again) == _bytes(first) == _bytes([uncached.edit(r) for r in REQUESTS])
    assert len(uncached.cache) == 0


def test_a_chained_edit_reuses_the_output_it_edits(engine: Flux2KleinEngine) -> None:
    """An output fed back as a reference is encoded once, whatever object carries it."""
    (output,) = engine.edit(EditRequest("first", [SQUARE], 256, 256, [1]))
    engine.edit(EditRequest("second", [output], 256, 256, [1]))
    hits = engine.cache.hits
    engine.edit(EditRequest("third", [output.copy()], 256, 256, [1]))
    assert engine.cache.hits == hits + 1  # the reference, not the new prompt


def test_the_cache_stays_within_its_bytes(preview_dir: Path) -> None:
    small = _engine(preview_dir, cache_mib=1)
    for index in range(12):
        reference = noise_image(512, 512, seed=index)
        small.edit(EditRequest(f"prompt {index}", [reference], 256, 256, [1]))
        assert small.cache.bytes <= 1024 * 1024
    assert 0 < len(small.cache) < 24  # some were evicted


def test_warm_up_leaves_the_cache_empty(engine: Flux2KleinEngine) -> None:
    engine.warm_up([(256, 256)])
    assert len(engine.cache) == 0


def _counted(method: Any, calls: list[str], name: str) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return method(*args, **kwargs)

    return counted
