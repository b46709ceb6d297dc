"""From a model's native size to the size the table asks for (4K, or anything above a model's
ceiling): an optional super-resolution model loaded with spandrel, else Lanczos.

torch, numpy and spandrel are imported inside the functions that need them, so importing this
module stays cheap and works without the worker's dependencies.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import logging
import math
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from PIL import Image

from retouch.media.decode import to_rgb
from retouch.media.encode import resize_exact

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_TILE = 512
"""Input pixels per tile side: a 4x RRDB tile then peaks at ~1-2 GB, whatever the image size."""
TILE_PAD = 32
"""Context around each tile, cropped from its output: wider than what Real-ESRGAN models see
of their neighbours in practice (Real-ESRGAN's own default is 10), so tile seams vanish."""
MAX_PASSES = 3
"""Model passes at most (a 2x model reaches 8x); artefacts compound, Lanczos does the rest."""
_SR_CHANNELS = 3
"""RGB in, RGB out: grey or RGBA models do not fit images from the engines."""


class UpscalerError(ValueError):
    """The weights file cannot serve as an image super-resolution model."""


class Upscaler(Protocol):
    name: str
    """How the output was made, for the result's metadata (e.g. "lanczos")."""

    def upscale(self, image: Image.Image, width: int, height: int) -> Image.Image:
        """Return `image` as RGB of exactly (width, height) (transparency composited onto white,
        as decoding does)."""
        ...


class LanczosUpscaler:
    """Plain Lanczos resampling: no model, no new detail."""

    name: str = "lanczos"

    def upscale(self, image: Image.Image, width: int, height: int) -> Image.Image:
        _check_size(width, height)
        return resize_exact(to_rgb(image), width, height)


class SpandrelUpscaler:
    """A Real-ESRGAN-family super-resolution model run through spandrel, tiled, then Lanczos to
    the exact size. Model passes run one at a time per instance, so memory stays bounded."""

    name: str

    def __init__(self, descriptor: Any, *, name: str, tile: int | None = DEFAULT_TILE) -> None:
        """`descriptor` is a loaded spandrel ImageModelDescriptor; `tile` None runs whole
        images at once (memory grows with the image)."""
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be at least 1 pixel, not {tile}")
        self._model = descriptor
        self.name = name
        self.scale: int = descriptor.scale
        # Models that tile internally are run on whole images, as spandrel advises.
        self.tile = tile if _tiling_allowed(descriptor) else None
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: Path, *, device: str | None = None, tile: int | None = DEFAULT_TILE
    ) -> SpandrelUpscaler:
        """Load a super-resolution weights file (.pth, .safetensors, .ckpt, .pt).

        device None picks CUDA when available (float16, or bfloat16 for models without fp16
        support), else the CPU in float32. Raises UpscalerError when the file is not an
        RGB image super-resolution model spandrel knows, FileNotFoundError when it is missing.
        """
        import torch

        if not path.is_file():
            raise FileNotFoundError(f"super-resolution weights not found: {path}")
        spandrel = _import_spandrel()
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            # Loaded on the CPU first, so a device problem is not reported as a bad file.
            descriptor = spandrel.ModelLoader(device="cpu").load_from_file(path)
        except Exception as error:
            # Unknown architecture, known keys with wrong shapes, a corrupt or refused pickle,
            # a bad extension: the operator needs the reason, whatever raised it.
            detail = str(error) or "no architecture it knows matches the weights"
            raise UpscalerError(
                f"{path.name} is not a model spandrel can load: {detail} ({type(error).__name__})"
            ) from error
        _check_super_resolution(descriptor, path)
        descriptor.to(target, dtype=_dtype_for(descriptor, target))
        descriptor.eval()
        name = f"spandrel:{descriptor.architecture.name} x{descriptor.scale} ({path.name})"
        return cls(descriptor, name=name, tile=tile)

    def upscale(self, image: Image.Image, width: int, height: int) -> Image.Image:
        _check_size(width, height)
        current = to_rgb(image)
        for _ in range(_passes(current.size, (width, height), self.scale)):
            with self._lock:
                current = self._run(current)
        return resize_exact(current, width, height)

    def _run(self, image: Image.Image) -> Image.Image:
        """One model pass over an RGB image, tile by tile; output is `scale` times larger."""
        import numpy as np
        import torch

        model = self._model
        scale = self.scale
        width, height = image.size
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        source = pixels.permute(2, 0, 1).unsqueeze(0).to(device=model.device, dtype=model.dtype)
        source = source / 255
        # The output is assembled as uint8 on the host, so device memory stays one tile's worth.
        output = np.empty((height * scale, width * scale, _SR_CHANNELS), dtype=np.uint8)
        tile = self.tile or max(width, height)
        with torch.inference_mode():
            for rows, window_rows in _spans(height, tile):
                for cols, window_cols in _spans(width, tile):
                    result = model(source[:, :, window_rows, window_cols])
                    # Keep only the tile's own part of the output, not its context.
                    crop = result[
                        0,
                        :,
                        _shifted(rows, -window_rows.start, scale),
                        _shifted(cols, -window_cols.start, scale),
                    ]
                    output[_shifted(rows, 0, scale), _shifted(cols, 0, scale)] = _to_uint8(
                        crop
                    ).numpy()
        return Image.fromarray(output)


def load_upscaler(path: Path | None, device: str | None = None) -> Upscaler:
    """The configured super-resolution model, or Lanczos when none is configured."""
    if path is None:
        return LanczosUpscaler()
    return SpandrelUpscaler.load(path, device=device)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"output size must be positive, not {width}x{height}")


def _passes(size: tuple[int, int], target: tuple[int, int], scale: int) -> int:
    """Model passes until the image covers the target on both sides (then Lanczos down)."""
    needed = max(target[0] / size[0], target[1] / size[1])
    if needed <= 1:
        return 0
    # The epsilon keeps an exact 4x request at one pass despite float rounding.
    return min(MAX_PASSES, math.ceil(math.log(needed) / math.log(scale) - 1e-9))


def _spans(length: int, tile: int) -> Iterator[tuple[slice, slice]]:
    """Each tile along one side, with the window the model runs on: the tile plus TILE_PAD of
    context, always the same length (shifted inward at the borders) so every call has the same
    convolution shapes (oneDNN and cuDNN plan per shape) and border tiles keep their context."""
    window = min(tile + 2 * TILE_PAD, length)
    for start in range(0, length, tile):
        offset = min(max(start - TILE_PAD, 0), length - window)
        yield slice(start, min(start + tile, length)), slice(offset, offset + window)


def _shifted(span: slice, by: int, scale: int) -> slice:
    """`span` moved by `by` input pixels, in output pixels."""
    return slice((span.start + by) * scale, (span.stop + by) * scale)


def _to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) float tensor in [0, 1] as an (H, W, C) uint8 tensor on the host."""
    import torch

    return tensor.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu()


def _tiling_allowed(descriptor: Any) -> bool:
    spandrel = _import_spandrel()
    return bool(descriptor.tiling != spandrel.ModelTiling.INTERNAL)


def _check_super_resolution(descriptor: Any, path: Path) -> None:
    spandrel = _import_spandrel()
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscalerError(f"{path.name} is not an image-to-image model ({type(descriptor)})")
    if descriptor.purpose != "SR" or descriptor.scale < 2:
        raise UpscalerError(
            f"{path.name} is a {descriptor.purpose} model at scale {descriptor.scale}, "
            "not a super-resolution model (scale 2 or more)"
        )
    channels = (descriptor.input_channels, descriptor.output_channels)
    if channels != (_SR_CHANNELS, _SR_CHANNELS):
        raise UpscalerError(f"{path.name} maps {channels[0]} to {channels[1]} channels, not RGB")


def _dtype_for(descriptor: Any, device: torch.device) -> torch.dtype:
    """fp16 on CUDA where the model supports it (what Real-ESRGAN itself runs), bf16 where only
    that is supported, fp32 elsewhere: CPU half-precision convolutions are slow or missing."""
    import torch

    if device.type != "cuda":
        return torch.float32
    if descriptor.supports_half:
        return torch.float16
    if descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


_IMPORT_LOCK = threading.Lock()


@functools.cache
def _import_spandrel() -> Any:
    """The spandrel module, typed Any: it ships no type information.

    spandrel imports torchvision when it is imported, but only two architectures we never run
    (LaMa inpainting, RestoreFormer face restoration) use it. Where torchvision is missing or
    broken (PyPI's torchvision is built for CUDA torch and fails beside a CPU torch), a stand-in
    is put in place for the import only; those two architectures then fail if called.
    """
    # Serialised: two first callers swapping sys.modules entries could leave the stand-in in.
    with _IMPORT_LOCK:
        try:
            importlib.import_module("torchvision")
        except Exception as error:  # missing, or built for another torch: its C ops fail
            log.info("torchvision unusable (%s); importing spandrel without it", error)
            with _torchvision_stand_in():
                return importlib.import_module("spandrel")
        return importlib.import_module("spandrel")


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _needs_torchvision(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError("this spandrel architecture needs torchvision, which is not installed")


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """torchvision.transforms.functional with the names spandrel imports, in sys.modules for
    the duration only, so other libraries still see torchvision as absent afterwards."""
    functional = types.ModuleType("torchvision.transforms.functional")
    vars(functional).update(
        InterpolationMode=_InterpolationMode,
        rotate=_needs_torchvision,
        normalize=_needs_torchvision,
    )
    transforms = types.ModuleType("torchvision.transforms")
    vars(transforms).update(functional=functional)
    package = types.ModuleType("torchvision")
    vars(package).update(transforms=transforms)
    stand_ins = {module.__name__: module for module in (package, transforms, functional)}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
