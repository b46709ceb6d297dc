"""Upscalers: exact output sizes; a spandrel model built here with tiny random weights (no
download) loads from .pth and .safetensors, runs tiled, and bad files fail clearly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from retouch.engine.upscale import (
    MAX_PASSES,
    LanczosUpscaler,
    SpandrelUpscaler,
    Upscaler,
    UpscalerError,
    _passes,
    load_upscaler,
)

needs_spandrel = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("spandrel") is None,
    reason="needs torch and spandrel (pip install --no-deps spandrel einops)",
)


def _photo(width: int, height: int) -> Image.Image:
    noise = Image.effect_noise((width, height), 50)
    gradient = Image.linear_gradient("L").resize((width, height))
    return Image.merge("RGB", (noise, gradient, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def _architectures() -> Any:
    from retouch.engine.upscale import _import_spandrel

    return _import_spandrel().architectures


def _save(path: Path, module: Any) -> Path:
    """Write a module's weights as spandrel would find them in an operator's file."""
    import torch

    state = {name: tensor.contiguous() for name, tensor in module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save(state, path)
    return path


def _weights(build: Callable[[Any], Any]) -> Callable[[Path], Path]:
    """Seeded random weights of an architecture, so every run sees the same model."""

    def make(path: Path) -> Path:
        import torch

        torch.manual_seed(0)
        return _save(path, build(_architectures()))

    return make


tiny_esrgan = _weights(lambda arch: arch.ESRGAN.ESRGAN(num_filters=8, num_blocks=1, scale=4))
tiny_compact_x2 = _weights(lambda arch: arch.Compact.Compact(num_feat=8, num_conv=2, upscale=2))
tiny_compact_x1 = _weights(lambda arch: arch.Compact.Compact(num_feat=8, num_conv=2, upscale=1))


def _linear_layer(path: Path) -> Path:
    import torch

    return _save(path, torch.nn.Linear(3, 3))


@pytest.fixture(scope="module")
def esrgan_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_esrgan(tmp_path_factory.mktemp("sr") / "tiny-esrgan.pth")


@pytest.fixture(scope="module")
def compact_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_compact_x2(tmp_path_factory.mktemp("sr") / "compact.safetensors")


@pytest.fixture(scope="module")
def esrgan(esrgan_path: Path) -> SpandrelUpscaler:
    return SpandrelUpscaler.load(esrgan_path, device="cpu")


# Lanczos and the pass rule need neither torch nor spandrel.


@pytest.mark.parametrize("size", [(256, 192), (250, 190), (40, 30), (64, 48)])
def test_lanczos_gives_exactly_the_size(size: tuple[int, int]) -> None:
    upscaler: Upscaler = LanczosUpscaler()
    result = upscaler.upscale(_photo(64, 48), *size)
    assert result.size == size and result.mode == "RGB"
    assert upscaler.name == "lanczos"


def test_lanczos_flattens_transparency_onto_white() -> None:
    result = LanczosUpscaler().upscale(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), 32, 32)
    assert result.mode == "RGB" and result.getpixel((16, 16)) == (255, 255, 255)


def test_no_weights_file_means_lanczos() -> None:
    assert isinstance(load_upscaler(None), LanczosUpscaler)


@pytest.mark.parametrize("size", [(0, 10), (10, -1)])
def test_a_size_must_be_positive(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        LanczosUpscaler().upscale(_photo(8, 8), *size)


@pytest.mark.parametrize(
    ("size", "target", "scale", "passes"),
    [
        ((64, 48), (64, 48), 4, 0),
        ((64, 48), (32, 24), 4, 0),
        ((64, 48), (256, 192), 4, 1),
        ((64, 48), (250, 190), 4, 1),
        ((64, 48), (257, 100), 4, 2),
        ((64, 48), (256, 192), 2, 2),
        ((1024, 1024), (4096, 4096), 4, 1),
        ((1024, 1024), (4096, 4096), 2, 2),
        ((16, 16), (4096, 4096), 2, MAX_PASSES),
    ],
)
def test_passes_until_the_target_is_covered(
    size: tuple[int, int], target: tuple[int, int], scale: int, passes: int
) -> None:
    assert _passes(size, target, scale) == passes


def test_importing_does_not_import_torch_or_spandrel() -> None:
    code = (
        "import sys, retouch.engine.upscale, retouch.engine.references;"
        "print(sorted(m for m in ('torch', 'spandrel', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# The spandrel path, with tiny random-weight models.


@needs_spandrel
@pytest.mark.parametrize("size", [(256, 192), (250, 190), (100, 75), (64, 48)])
def test_esrgan_gives_exactly_the_size(esrgan: SpandrelUpscaler, size: tuple[int, int]) -> None:
    result = esrgan.upscale(_photo(64, 48), *size)
    assert result.size == size and result.mode == "RGB"


@needs_spandrel
def test_name_says_what_made_the_output(esrgan: SpandrelUpscaler) -> None:
    assert esrgan.name == "spandrel:ESRGAN x4 (tiny-esrgan.pth)"
    assert esrgan.scale == 4


@needs_spandrel
def test_output_is_deterministic(esrgan: SpandrelUpscaler, esrgan_path: Path) -> None:
    image = _photo(64, 48)
    first = esrgan.upscale(image, 250, 190).tobytes()
    reloaded = SpandrelUpscaler.load(esrgan_path, device="cpu")
    assert reloaded.upscale(image, 250, 190).tobytes() == first


@needs_spandrel
@pytest.mark.parametrize(
    ("weights", "size", "tile"),
    [
        # Many tiles in both directions, with a cheap model: checks the crop arithmetic.
        ("compact_path", (150, 110), 32),
        # A deep model whose receptive field spans several tiles (it costs more: one row).
        ("esrgan_path", (192, 40), 48),
    ],
)
def test_tiled_matches_untiled(
    request: pytest.FixtureRequest, weights: str, size: tuple[int, int], tile: int
) -> None:
    path: Path = request.getfixturevalue(weights)
    tiled = SpandrelUpscaler.load(path, device="cpu", tile=tile)
    whole = SpandrelUpscaler.load(path, device="cpu", tile=None)
    image = _photo(*size)
    target = (size[0] * tiled.scale, size[1] * tiled.scale)
    a, b = tiled.upscale(image, *target), whole.upscale(image, *target)
    # Tile context exceeds these nets' receptive fields; only float summation order differs.
    assert max(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True)) <= 2


@needs_spandrel
def test_the_model_really_runs(esrgan: SpandrelUpscaler) -> None:
    image = _photo(64, 48)
    assert (
        esrgan.upscale(image, 256, 192).tobytes()
        != LanczosUpscaler().upscale(image, 256, 192).tobytes()
    )


@needs_spandrel
def test_a_2x_safetensors_model_runs_twice_for_4x(
    compact_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upscaler = load_upscaler(compact_path, "cpu")
    assert isinstance(upscaler, SpandrelUpscaler)
    assert upscaler.name == "spandrel:RealESRGAN Compact x2 (compact.safetensors)"
    calls: list[tuple[int, int]] = []
    run = upscaler._run

    def counting(image: Image.Image) -> Image.Image:
        calls.append(image.size)
        return run(image)

    monkeypatch.setattr(upscaler, "_run", counting)
    result = upscaler.upscale(_photo(64, 48), 250, 190)
    assert result.size == (250, 190) and calls == [(64, 48), (128, 96)]


@needs_spandrel
def test_rgba_and_grey_inputs_come_back_rgb(esrgan: SpandrelUpscaler) -> None:
    for image in (Image.new("RGBA", (20, 10), (5, 5, 5, 128)), Image.new("L", (20, 10), 9)):
        result = esrgan.upscale(image, 80, 40)
        assert result.size == (80, 40) and result.mode == "RGB"


@needs_spandrel
@pytest.mark.parametrize(
    ("filename", "write", "message"),
    [
        ("restore.pth", tiny_compact_x1, "not a super-resolution model"),
        ("other.pth", _linear_layer, "not a model spandrel can load: no architecture"),
        ("notes.txt", lambda path: path.write_text("hello"), "not a model spandrel can load"),
        ("broken.pth", lambda path: path.write_bytes(b"not a pickle"), "spandrel can load"),
    ],
)
def test_a_file_that_is_not_super_resolution_fails_clearly(
    tmp_path: Path, filename: str, write: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / filename
    write(path)
    with pytest.raises(UpscalerError, match=message) as caught:
        load_upscaler(path, "cpu")
    assert filename in str(caught.value)


@needs_spandrel
def test_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        SpandrelUpscaler.load(tmp_path / "missing.pth")


@needs_spandrel
def test_spandrel_import_leaves_no_torchvision_stand_in() -> None:
    from retouch.engine.upscale import _import_spandrel

    _import_spandrel()
    module = sys.modules.get("torchvision")
    # Either the real torchvision (it has a version) or nothing: other libraries probe for it.
    assert module is None or hasattr(module, "__version__")
