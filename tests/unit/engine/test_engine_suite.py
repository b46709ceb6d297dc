"""The shared engine suite: every engine kind's preview model (real pipeline classes, tiny
random weights) passes the same tests, so each engine honours the Engine contract: exact
sizes, batching, per-image seeds, determinism, progress, cancelling and its size rules."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
from PIL import Image

from retouch.contract.sizes import SIZE_TABLE
from retouch.engine.base import EditCancelled, EditRequest
from retouch.engine.diffusers_engine import DiffusersEngine
from retouch.engine.options import EngineOptions
from retouch.engine.registry import ENGINE_KINDS, describe_kind, preview_dirname

from .helpers import as_array, noise_image

REF = noise_image(320, 240)
ODD_REFERENCES = [
    noise_image(40, 40, 1),
    noise_image(1000, 100, 2),
    noise_image(200, 300, 3),
    noise_image(1200, 1000, 4),
]


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


def steps_of(engine: DiffusersEngine) -> int:
    return engine.info.default_steps


def test_info_fields(any_engine: DiffusersEngine) -> None:
    info, kind = any_engine.info, type(any_engine)
    assert ENGINE_KINDS[info.engine] is kind
    assert (info.model, info.preview, info.device, info.dtype) == (
        "preview",
        True,
        "cpu",
        "float32",
    )
    described = describe_kind(info.engine)
    for field in ("max_pixels", "size_multiple", "min_side", "max_references", "reference_pixels"):
        assert getattr(info, field) == described[field], field
    assert info.default_steps == (kind.PREVIEW_STEPS or kind.DEFAULT_STEPS)
    assert info.extra["pipeline"] == kind.PIPELINE
    # A preview may use a subclass of the real pipeline (the Qwen one does, for speed).
    assert isinstance(any_engine.pipeline, getattr(diffusers, kind.PIPELINE))
    assert info.extra["license"] == kind.LICENSE
    assert info.max_references >= 1 and info.size_multiple == 16


@pytest.mark.parametrize(
    ("wanted", "count"),
    [((512, 512), 1), ((256, 256), 4), ((424, 632), 1), ((1376, 768), 1), ((64, 1024), 2)],
)
def test_outputs_have_the_exact_native_size(
    any_engine: DiffusersEngine, wanted: tuple[int, int], count: int
) -> None:
    width, height = any_engine.native_size(*wanted)
    images = any_engine.edit(request(width, height, seeds=list(range(count))))
    assert len(images) == count
    assert all(image.size == (width, height) and image.mode == "RGB" for image in images)


def test_several_references_of_odd_sizes(any_engine: DiffusersEngine) -> None:
    references = ODD_REFERENCES[: any_engine.info.max_references]
    images = any_engine.edit(request(384, 256, seeds=[1, 2], images=references))
    assert [image.size for image in images] == [(384, 256)] * 2


@pytest.mark.parametrize(
    "reference",
    [
        Image.new("RGB", (40, 40), (10, 20, 30)),
        Image.new("RGB", (1000, 100), (200, 0, 0)),
        Image.new("RGB", (5, 700)),
        Image.new("L", (3, 3)),
        Image.new("RGBA", (64, 600)),
        Image.new("RGB", (2000, 1500)),
    ],
    ids=["40x40", "1000x100", "5x700", "L-3x3", "RGBA-64x600", "2000x1500"],
)
def test_awkward_references_do_not_crash(
    any_engine: DiffusersEngine, reference: Image.Image
) -> None:
    (image,) = any_engine.edit(request(images=[reference]))
    assert image.size == (256, 256)


def test_more_references_than_the_engine_takes_are_refused(any_engine: DiffusersEngine) -> None:
    too_many = [REF] * (any_engine.info.max_references + 1)
    with pytest.raises(ValueError, match="combine"):
        any_engine.edit(request(images=too_many))


def test_without_references(any_engine: DiffusersEngine) -> None:
    if type(any_engine).NEEDS_REFERENCE:
        with pytest.raises(ValueError, match="reference"):
            any_engine.edit(request(images=[]))
    else:
        assert any_engine.edit(request(images=[]))[0].size == (256, 256)


def test_references_change_the_output(any_engine: DiffusersEngine) -> None:
    a = any_engine.edit(request(images=[noise_image(256, 256, 1)]))[0]
    b = any_engine.edit(request(images=[noise_image(256, 256, 2)]))[0]
    assert not np.array_equal(as_array(a), as_array(b))


def test_deterministic_with_per_image_seeds(any_engine: DiffusersEngine) -> None:
    batch = any_engine.edit(request(seeds=[10, 11, 12]))
    again = any_engine.edit(request(seeds=[10, 11, 12]))
    for first, second in zip(batch, again, strict=True):
        assert as_array(first).tobytes() == as_array(second).tobytes()  # same request, same pixels
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        assert np.abs(as_array(batch[i]) - as_array(batch[j])).mean() > 1  # seeds differ
    for seed, from_batch in [(10, batch[0]), (12, batch[2])]:
        (single,) = any_engine.edit(request(seeds=[seed]))
        # Image k of a batch is a single run with seed k. Batched matmuls round differently
        # (~1e-7); after uint8 quantisation that is at most one level on a few pixels.
        difference = np.abs(as_array(single) - as_array(from_batch))
        assert difference.max() <= 1
        assert difference.mean() < 0.01


def test_any_int_seed_maps_modulo_2_64(any_engine: DiffusersEngine) -> None:
    negative, huge, wrapped = any_engine.edit(request(seeds=[-1, 2**70 + 5, 5]))
    (minus_one,) = any_engine.edit(request(seeds=[2**64 - 1]))
    assert np.abs(as_array(negative) - as_array(minus_one)).max() <= 1
    assert np.abs(as_array(huge) - as_array(wrapped)).max() <= 1


def test_progress_is_reported_per_step(any_engine: DiffusersEngine) -> None:
    calls: list[tuple[int, int]] = []
    any_engine.edit(request(), on_step=lambda done, total: calls.append((done, total)))
    total = steps_of(any_engine)
    assert calls == [(step, total) for step in range(1, total + 1)]


def test_cancel_between_steps_raises_before_decoding(
    any_engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    vae = any_engine.pipeline.vae
    decodes: list[Any] = []
    decode = vae.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decodes.append(args)
        return decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", counting_decode)
    calls: list[tuple[int, int]] = []
    total = steps_of(any_engine)
    with pytest.raises(EditCancelled):
        any_engine.edit(
            request(),
            on_step=lambda done, total: calls.append((done, total)),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert calls == [(1, total), (2, total)]  # the remaining steps were skipped
    assert decodes == []  # and so was the VAE decode
    # The engine is usable afterwards and the cancel does not leak into the next run.
    calls.clear()
    images = any_engine.edit(
        request(), on_step=lambda d, t: calls.append((d, t)), should_cancel=lambda: False
    )
    assert len(images) == 1 and len(calls) == total and len(decodes) == 1


def test_cancel_after_the_last_step_still_skips_the_decode(any_engine: DiffusersEngine) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(EditCancelled):
        any_engine.edit(
            request(),
            on_step=lambda done, total: calls.append((done, total)),
            should_cancel=lambda: len(calls) == steps_of(any_engine),
        )


def test_cancel_before_start_raises_without_running(any_engine: DiffusersEngine) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(EditCancelled):
        any_engine.edit(
            request(),
            on_step=lambda done, total: calls.append((done, total)),
            should_cancel=lambda: True,
        )
    assert calls == []


def test_tiled_vae_gives_the_exact_size(any_engine: DiffusersEngine, models_dir: Path) -> None:
    """vae_tiling forced on, at a width above every preview VAE's tile size (klein and Kontext
    tile above 1024 px, Qwen above 256 px): encode and decode run in tiles."""
    kind = type(any_engine)
    tiled = kind.load_preview(
        models_dir / preview_dirname(kind.KIND),
        options=EngineOptions(device="cpu", vae_tiling=True),
    )
    width, height = tiled.native_size(1568, 672)
    assert width > 1024
    (image,) = tiled.edit(request(width, height, images=[noise_image(1200, 500)]))
    assert tiled.pipeline.vae.use_tiling and image.size == (width, height)


def test_native_size_rules(any_engine: DiffusersEngine) -> None:
    info = any_engine.info
    wanted = [size for table in SIZE_TABLE.values() for size in table.values()]
    wanted += [(40, 40), (40, 100), (1000, 750), (100000, 10), (10, 100000), (1, 1)]
    for width, height in wanted:
        native = any_engine.native_size(width, height)
        fitted_w, fitted_h = native
        assert fitted_w % info.size_multiple == 0 and fitted_h % info.size_multiple == 0
        assert min(native) >= info.min_side and fitted_w * fitted_h <= info.max_pixels
        assert any_engine.native_size(*native) == native  # idempotent
        if max(width, height) / min(width, height) <= 4:  # no side clamped: ratio kept
            assert abs(math.log(fitted_w / fitted_h / (width / height))) < 0.03
        if width * height <= info.max_pixels and min(width, height) >= info.min_side:
            assert abs(fitted_w - width) <= 8 and abs(fitted_h - height) <= 8  # just rounded
    with pytest.raises(ValueError):
        any_engine.native_size(0, 100)


def test_unsupported_requests_are_refused(any_engine: DiffusersEngine) -> None:
    info = any_engine.info
    side = math.isqrt(info.max_pixels) // info.size_multiple * info.size_multiple
    too_big = side + info.size_multiple
    for width, height, seeds in [
        (250, 256, [1]),  # not a multiple
        (info.min_side - 16, 256, [1]),  # under the minimum side
        (too_big, too_big, [1]),  # over the pixel ceiling
        (256, 256, []),  # no outputs
    ]:
        with pytest.raises(ValueError):
            any_engine.edit(request(width, height, seeds=seeds))


def test_a_1024_edit_stays_cheap(any_engine: DiffusersEngine) -> None:
    """About a second on the 2-core CPU this was written on. Measured in CPU time with a wide
    bound, so a busy machine does not fail it, while a preview that lost the real spatial
    factors (a million tokens at 1024², minutes) still does."""
    reference = noise_image(1024, 768)
    started = time.process_time()
    any_engine.edit(request(1024, 1024, images=[reference]))
    assert time.process_time() - started < 15.0


def test_importing_engine_modules_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import retouch.engine.registry as registry\n"
        "import retouch.engine.preview, retouch.engine.sizing, retouch.engine.diffusers_engine\n"
        "import retouch.engine.preview_flux2_klein, retouch.engine.preview_flux1_kontext\n"
        "import retouch.engine.preview_qwen_image_edit, retouch.engine.qwen_image_edit\n"
        "for kind in registry.ENGINE_KINDS:\n"
        "    assert registry.describe_kind(kind)['engine'] == kind\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'tokenizers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
