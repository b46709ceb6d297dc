"""What is particular to FLUX.2 [klein]: its limits, its size table and its text layers. The
shared behaviour is in test_engine_suite.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from retouch.engine.base import EditRequest
from retouch.engine.diffusers_engine import VAE_TILING_PIXELS
from retouch.engine.flux2_klein import Flux2KleinEngine, _text_layers

from .helpers import noise_image

MAX_PIXELS = Flux2KleinEngine.MAX_PIXELS


def test_limits(engine: Flux2KleinEngine) -> None:
    info = engine.info
    assert (info.engine, info.model, info.preview) == ("flux2-klein", "preview", True)
    assert (info.max_pixels, info.size_multiple, info.min_side) == (4 * 1024 * 1024, 16, 64)
    assert (info.max_references, info.reference_pixels, info.default_steps) == (4, 1024**2, 4)
    assert (info.device, info.dtype) == ("cpu", "float32")


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
    assert engine.native_size(*wanted) == native


def test_outputs_above_2_mp_are_decoded_in_tiles(engine: Flux2KleinEngine) -> None:
    """klein is the only engine above 1 MP: VAE tiling (auto) switches on above 2 MP, and the
    tiled decode still gives the exact size."""
    vae = engine.pipeline.vae
    assert VAE_TILING_PIXELS < 1456 * 1456
    (image,) = engine.edit(EditRequest("x", [noise_image(300, 200)], 1456, 1456, [1]))
    assert vae.use_tiling and image.size == (1456, 1456)
    engine.edit(EditRequest("x", [noise_image(300, 200)], 256, 256, [1]))
    assert not vae.use_tiling


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
