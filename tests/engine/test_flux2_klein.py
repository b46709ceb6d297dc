"""Flux2KleinEngine on the preview model: sizes, batching, determinism, progress, cancel."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from retouch.engine.base import EditCancelled, EditRequest
from retouch.engine.flux2_klein import (
    MAX_PIXELS,
    Flux2KleinEngine,
    _text_layers,
    fit_reference,
    fit_size,
)

from .helpers import as_array, noise_image

REF = noise_image(320, 240)


def request(
    width: int = 256,
    height: int = 256,
    seeds: list[int] | None = None,
    images: list[Image.Image] | None = None,
    prompt: str = "make the sky purple",
) -> EditRequest:
    return EditRequest(
        prompt=prompt,
        images=[REF] if images is None else images,
        width=width,
        height=height,
        seeds=[7] if seeds is None else seeds,
    )


def test_info(engine: Flux2KleinEngine) -> None:
    info = engine.info
    assert (info.engine, info.model, info.preview) == ("flux2-klein", "preview", True)
    assert (info.max_pixels, info.size_multiple, info.min_side) == (4 * 1024 * 1024, 16, 64)
    assert (info.device, info.dtype) == ("cpu", "float32")


@pytest.mark.parametrize(
    ("width", "height", "count"),
    [(512, 512, 1), (848, 1264, 1), (1376, 768, 1), (512, 512, 4), (64, 1024, 2)],
)
def test_output_count_and_exact_size(
    engine: Flux2KleinEngine, width: int, height: int, count: int
) -> None:
    images = engine.edit(request(width, height, seeds=list(range(count))))
    assert len(images) == count
    assert all(image.size == (width, height) and image.mode == "RGB" for image in images)


def test_several_references_of_different_sizes(engine: Flux2KleinEngine) -> None:
    refs = [noise_image(200, 300, 1), noise_image(640, 480, 2), noise_image(1200, 1000, 3)]
    images = engine.edit(request(384, 256, seeds=[1, 2], images=refs))
    assert [image.size for image in images] == [(384, 256)] * 2


def test_without_references(engine: Flux2KleinEngine) -> None:
    assert engine.edit(request(images=[]))[0].size == (256, 256)


def test_references_change_the_output(engine: Flux2KleinEngine) -> None:
    a = engine.edit(request(images=[noise_image(256, 256, 1)]))[0]
    b = engine.edit(request(images=[noise_image(256, 256, 2)]))[0]
    assert not np.array_equal(as_array(a), as_array(b))


def test_same_request_gives_identical_pixels(engine: Flux2KleinEngine) -> None:
    first = engine.edit(request(seeds=[3, 4]))
    second = engine.edit(request(seeds=[3, 4]))
    for a, b in zip(first, second, strict=True):
        assert as_array(a).tobytes() == as_array(b).tobytes()


def test_batch_image_k_equals_a_single_run_with_seed_k(engine: Flux2KleinEngine) -> None:
    batch = engine.edit(request(seeds=[10, 11, 12]))
    for seed, from_batch in zip([10, 11, 12], batch, strict=True):
        (single,) = engine.edit(request(seeds=[seed]))
        # Batched matmuls round differently (~1e-7); after uint8 quantisation that is at
        # most one level on a few pixels.
        difference = np.abs(as_array(single) - as_array(from_batch))
        assert difference.max() <= 1
        assert difference.mean() < 0.01


def test_different_seeds_differ(engine: Flux2KleinEngine) -> None:
    a, b = engine.edit(request(seeds=[0, 1]))
    assert np.abs(as_array(a) - as_array(b)).mean() > 1


def test_any_int_seed_maps_modulo_2_64(engine: Flux2KleinEngine) -> None:
    negative, huge, wrapped = engine.edit(request(seeds=[-1, 2**70 + 5, 5]))
    (minus_one,) = engine.edit(request(seeds=[2**64 - 1]))
    assert np.abs(as_array(negative) - as_array(minus_one)).max() <= 1
    assert np.abs(as_array(huge) - as_array(wrapped)).max() <= 1


def test_progress_is_reported_per_step(engine: Flux2KleinEngine) -> None:
    calls: list[tuple[int, int]] = []
    engine.edit(request(), on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_between_steps_raises(engine: Flux2KleinEngine) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(EditCancelled):
        engine.edit(
            request(),
            on_step=lambda done, total: calls.append((done, total)),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert calls == [(1, 4), (2, 4)]  # the remaining steps were skipped
    # The engine is usable afterwards and the interrupt does not leak into the next run.
    calls.clear()
    engine.edit(request(), on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_before_start_raises(engine: Flux2KleinEngine) -> None:
    with pytest.raises(EditCancelled):
        engine.edit(request(), should_cancel=lambda: True)


def test_never_cancelled_runs_through(engine: Flux2KleinEngine) -> None:
    assert len(engine.edit(request(), should_cancel=lambda: False)) == 1


@pytest.mark.parametrize(
    "ref",
    [
        Image.new("RGB", (40, 40), (10, 20, 30)),
        Image.new("RGB", (1000, 100), (200, 0, 0)),
        Image.new("RGB", (5, 700)),
        Image.new("L", (3, 3)),
        Image.new("RGBA", (64, 600)),
    ],
)
def test_awkward_references_do_not_crash(engine: Flux2KleinEngine, ref: Image.Image) -> None:
    (image,) = engine.edit(request(images=[ref]))
    assert image.size == (256, 256)


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((40, 40), (64, 64)),
        ((1000, 100), (1000, 125)),  # padded to 8:1
        ((5, 700), (88, 700)),  # padded to 8:1, which also makes the short side long enough
        ((30, 200), (64, 427)),  # grown to a 64 px short side
        ((20, 400), (64, 512)),  # padded to 50x400, then grown; still 8:1 at most
        ((64, 512), (64, 512)),  # already acceptable: untouched
        ((3000, 2000), (3000, 2000)),  # the pipeline itself shrinks large ones to ~1 MP
    ],
)
def test_fit_reference_changes_the_minimum(size: tuple[int, int], fitted: tuple[int, int]) -> None:
    image = Image.new("RGB", size)
    result = fit_reference(image)
    assert result.size == fitted
    if size == fitted:
        assert result is image
    width, height = result.size
    assert min(width, height) >= 64 and max(width, height) <= 8 * min(width, height)


@pytest.mark.parametrize(
    ("wanted", "native"),
    [
        ((1024, 1024), (1024, 1024)),
        ((424, 632), (432, 640)),  # nearest multiples of 16
        ((1000, 750), (1008, 752)),
        ((2048, 2048), (2048, 2048)),  # exactly 4 MP: stays
        ((2528, 1696), (2480, 1664)),  # over 4 MP: shrunk, ratio kept
        ((4000, 3000), (2352, 1760)),
        ((40, 40), (64, 64)),
        ((40, 100), (64, 160)),  # grown as a whole, ratio kept
        ((100000, 10), (65536, 64)),
    ],
)
def test_native_size(
    engine: Flux2KleinEngine, wanted: tuple[int, int], native: tuple[int, int]
) -> None:
    width, height = engine.native_size(*wanted)
    assert (width, height) == native
    assert width % 16 == 0 and height % 16 == 0
    assert min(width, height) >= 64 and width * height <= MAX_PIXELS
    assert engine.native_size(width, height) == (width, height)  # idempotent


def test_native_size_keeps_the_ratio_under_the_ceiling() -> None:
    for width, height in [(2528, 1696), (5000, 5000), (3840, 2160), (2160, 3840), (8000, 1000)]:
        fitted_w, fitted_h = fit_size(
            width, height, max_pixels=MAX_PIXELS, multiple=16, min_side=64
        )
        assert fitted_w * fitted_h <= MAX_PIXELS
        assert fitted_w * fitted_h > 0.97 * MAX_PIXELS
        assert abs(fitted_w / fitted_h / (width / height) - 1) < 0.02


def test_native_size_rejects_empty_sizes(engine: Flux2KleinEngine) -> None:
    with pytest.raises(ValueError):
        engine.native_size(0, 100)


@pytest.mark.parametrize(
    ("width", "height", "seeds"),
    [(250, 256, [1]), (48, 256, [1]), (2064, 2048, [1]), (256, 256, [])],
)
def test_unsupported_requests_are_refused(
    engine: Flux2KleinEngine, width: int, height: int, seeds: list[int]
) -> None:
    with pytest.raises(ValueError):
        engine.edit(request(width, height, seeds=seeds))


def _fake_pipe(depth: int, width: int, joint: int) -> SimpleNamespace:
    return SimpleNamespace(
        text_encoder=SimpleNamespace(
            config=SimpleNamespace(num_hidden_layers=depth, hidden_size=width)
        ),
        transformer=SimpleNamespace(config=SimpleNamespace(joint_attention_dim=joint)),
    )


def test_text_layers() -> None:
    assert _text_layers(_fake_pipe(36, 2560, 7680)) == (9, 18, 27)  # klein 4B
    assert _text_layers(_fake_pipe(36, 4096, 12288)) == (9, 18, 27)  # klein 9B
    assert _text_layers(_fake_pipe(3, 8, 24)) == (1, 2, 3)  # the preview
    with pytest.raises(ValueError):
        _text_layers(_fake_pipe(2, 8, 24))
