"""More reference images than an engine conditions on: combine them so every input reaches it.

Users send up to 20 images; an engine conditions on `EngineInfo.max_references` of them, each
seen at about `EngineInfo.reference_pixels`. Beyond that count the first image stays its own
reference (it is the one being edited) and the others are tiled, in input order, into reference
sheets: a grid of cells on a neutral background with thin separators, each input letterboxed in
its cell with its aspect ratio kept. With a single reference slot everything goes into one
sheet, the first image in a large cell beside the grid of the others.

Pillow only: the API process imports this to describe what an engine will do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from retouch.media.decode import to_rgb

SIZE_MULTIPLE = 16
"""Sheet sides are multiples of this (VAE 8x times 2x2 patches in the FLUX/Qwen families)."""
MIN_SHEET_SIDE = 64
"""The smallest reference side the pipelines accept (Flux2KleinPipeline rejects less)."""
MAX_SHEET_ASPECT = 4.0
"""Sheets stay within 1:4..4:1, well inside what pipelines accept (8:1) and what the models saw."""
MIN_REFERENCE_PIXELS = 128 * 128
"""Smallest usable budget; it also lets a 4:1 sheet keep both sides at MIN_SHEET_SIDE or more."""
LEAD_SHARE = 0.5
"""Share of a single-reference sheet given to the first image: it is the one being edited."""
BACKGROUND = (128, 128, 128)
"""Neutral letterbox fill: mid grey biases the model's colours least."""
SEPARATOR = (255, 255, 255)
"""Lines between cells, so the model sees where one input ends even on grey-edged images."""
REDUCING_GAP = 1.5
"""Shrink with a cheap box reduce to 1.5x the target, then Lanczos: ~6x faster than a full
Lanczos from 4 MP, and within ~54 dB PSNR of it on photographs (38 dB on pure noise)."""

Box = tuple[int, int, int, int]
"""x, y, width, height in pixels."""


@dataclass(frozen=True)
class SheetPlan:
    """One reference sheet: which inputs it shows and where."""

    reference: int
    """Index of the sheet in the returned references."""
    inputs: tuple[int, ...]
    """Indices of the inputs on the sheet, in input order."""
    grid: tuple[int, int]
    """Columns and rows of the grid of equal cells (without the lead cell, if any)."""
    size: tuple[int, int]
    """Sheet width and height."""
    lead: int | None
    """Input shown in the large cell beside the grid (single-reference engines), else None."""
    tiles: tuple[Box, ...]
    """Where each input landed on the sheet, aligned with `inputs`."""

    def as_dict(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "inputs": list(self.inputs),
            "grid": list(self.grid),
            "size": list(self.size),
            "lead": self.lead,
            "tiles": [list(tile) for tile in self.tiles],
        }


@dataclass(frozen=True)
class ReferencePlan:
    """What combine_references did, for the result's metadata."""

    inputs: int
    """How many images the user sent."""
    references: int
    """How many references the engine receives."""
    native: tuple[int, ...]
    """Inputs passed through unchanged, each as its own reference."""
    sheets: tuple[SheetPlan, ...] = ()

    @property
    def combined(self) -> bool:
        return bool(self.sheets)

    def as_dict(self) -> dict[str, object]:
        return {
            "inputs": self.inputs,
            "references": self.references,
            "native": list(self.native),
            "sheets": [sheet.as_dict() for sheet in self.sheets],
        }


def combine_references(
    images: list[Image.Image], *, max_references: int, reference_pixels: int
) -> tuple[list[Image.Image], ReferencePlan]:
    """Return at most `max_references` references that together show every input image.

    Up to `max_references` inputs come back unchanged (the same objects). Beyond that the first
    input stays its own reference and the others are split, in input order and as evenly as
    possible, across `max_references - 1` sheets; a group of one stays a native reference. With
    `max_references == 1` every input goes on one sheet, the first in the large lead cell, so a
    caller wanting the first image's aspect ratio (`auto`) must read it before combining.
    Sheets are RGB, at most `reference_pixels` pixels, with sides multiples of 16. Deterministic.
    """
    if max_references < 1:
        raise ValueError(f"max_references must be at least 1, not {max_references}")
    if reference_pixels < MIN_REFERENCE_PIXELS:
        raise ValueError(
            f"reference_pixels must be at least {MIN_REFERENCE_PIXELS}, not {reference_pixels}"
        )
    count = len(images)
    if count <= max_references:
        return list(images), ReferencePlan(count, count, tuple(range(count)))

    if max_references == 1:
        groups = [list(range(count))]
    else:
        groups = [[0], *_balanced(list(range(1, count)), max_references - 1)]
    references: list[Image.Image] = []
    native: list[int] = []
    sheets: list[SheetPlan] = []
    for reference, group in enumerate(groups):
        if len(group) == 1:
            references.append(images[group[0]])
            native.append(group[0])
            continue
        lead = max_references == 1
        layout = _lead_layout(images, group) if lead else _grid_layout(images, group)
        sheet, tiles = _render(layout, [images[i] for i in group], reference_pixels)
        references.append(sheet)
        sheets.append(
            SheetPlan(
                reference=reference,
                inputs=tuple(group),
                grid=layout.grid,
                size=sheet.size,
                lead=group[0] if lead else None,
                tiles=tuple(tiles),
            )
        )
    plan = ReferencePlan(count, len(references), tuple(native), tuple(sheets))
    return references, plan


def _balanced(items: list[int], parts: int) -> list[list[int]]:
    """Contiguous groups whose sizes differ by at most one, the larger ones first."""
    size, extra = divmod(len(items), parts)
    groups: list[list[int]] = []
    start = 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        groups.append(items[start:end])
        start = end
    return groups


@dataclass(frozen=True)
class _Rect:
    """A rectangle as fractions of the sheet's width and height."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class _Layout:
    aspect: float
    """Sheet width / height."""
    slots: tuple[_Rect, ...]
    """Every cell, filled with the background; the first len(images) hold the images."""
    grid: tuple[int, int]


def _aspect(image: Image.Image) -> float:
    width, height = image.size
    return max(width, 1) / max(height, 1)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _fill(image_aspect: float, cell_aspect: float) -> float:
    """Fraction of a cell an image covers when letterboxed into it."""
    return min(image_aspect / cell_aspect, cell_aspect / image_aspect)


def _grid_slots(count: int, cols: int, region: _Rect) -> list[_Rect]:
    """Row-major cells of a cols-wide grid filling `region`, enough for `count` images."""
    rows = math.ceil(count / cols)
    width = (region.x1 - region.x0) / cols
    height = (region.y1 - region.y0) / rows
    return [
        _Rect(
            region.x0 + col * width,
            region.y0 + row * height,
            region.x0 + (col + 1) * width,
            region.y0 + (row + 1) * height,
        )
        for row in range(rows)
        for col in range(cols)
    ]


def _best_grid(aspects: Sequence[float], region_aspect: float | None) -> tuple[int, float]:
    """Columns and region aspect of the grid that covers the most of its area with image.

    With region_aspect None the region (a whole sheet) may take any aspect within the sheet
    limits; candidate cell shapes are the images' own. Ties go to a squarer, then wider, grid.
    """
    limit = MAX_SHEET_ASPECT
    best: tuple[float, float, int] | None = None
    best_grid = (1, 1.0)
    for cols in range(1, len(aspects) + 1):
        rows = math.ceil(len(aspects) / cols)
        if region_aspect is None:
            candidates = sorted({_clamp(cols * a / rows, 1 / limit, limit) for a in aspects})
        else:
            candidates = [region_aspect]
        for whole in candidates:
            cell = whole * rows / cols
            coverage = sum(_fill(a, cell) for a in aspects) / (cols * rows)
            # Rounded so that float noise never decides between equal layouts.
            key = (round(coverage, 9), -round(abs(math.log(whole)), 9), cols)
            if best is None or key > best:
                best, best_grid = key, (cols, whole)
    return best_grid


def _grid_layout(images: Sequence[Image.Image], group: Sequence[int]) -> _Layout:
    aspects = [_aspect(images[i]) for i in group]
    cols, aspect = _best_grid(aspects, None)
    slots = _grid_slots(len(group), cols, _Rect(0.0, 0.0, 1.0, 1.0))
    return _Layout(aspect, tuple(slots), (cols, math.ceil(len(group) / cols)))


def _lead_layout(images: Sequence[Image.Image], group: Sequence[int]) -> _Layout:
    """The first image in a LEAD_SHARE cell, beside (or above) a grid of the others.

    The lead cell takes the first image's aspect as far as the sheet limits allow; the side
    (left or top) is the one that lets it fill its cell most, then keeps the sheet squarest.
    """
    lead_aspect = _aspect(images[group[0]])
    limit = MAX_SHEET_ASPECT
    split = LEAD_SHARE
    options: list[tuple[tuple[float, float, int], float, _Rect, _Rect, float]] = []
    for beside in (True, False):
        if beside:  # lead on the left: its cell is `split` of the sheet's width
            aspect = _clamp(lead_aspect / split, 1 / limit, limit)
            cell, rest_aspect = aspect * split, aspect * (1 - split)
            lead, rest = _Rect(0.0, 0.0, split, 1.0), _Rect(split, 0.0, 1.0, 1.0)
        else:  # lead on top: its cell is `split` of the sheet's height
            aspect = _clamp(lead_aspect * split, 1 / limit, limit)
            cell, rest_aspect = aspect / split, aspect / (1 - split)
            lead, rest = _Rect(0.0, 0.0, 1.0, split), _Rect(0.0, split, 1.0, 1.0)
        key = (round(_fill(lead_aspect, cell), 9), -round(abs(math.log(aspect)), 9), beside)
        options.append((key, aspect, lead, rest, rest_aspect))
    _, aspect, lead, rest, rest_aspect = max(options, key=lambda option: option[0])
    others = [_aspect(images[i]) for i in group[1:]]
    cols, _ = _best_grid(others, rest_aspect)
    slots = [lead, *_grid_slots(len(others), cols, rest)]
    return _Layout(aspect, tuple(slots), (cols, math.ceil(len(others) / cols)))


def _sheet_size(layout: _Layout, images: Sequence[Image.Image], budget: int) -> tuple[int, int]:
    """The budget's size at the layout's aspect, or less when that already shows every image
    at its own resolution (a sheet of icons stays small instead of blowing them up)."""
    natural = 0.0
    for slot, image in zip(layout.slots, images, strict=False):
        # Sheet height at which this image fits its cell at scale 1.
        natural = max(
            natural,
            image.width / ((slot.x1 - slot.x0) * layout.aspect),
            image.height / (slot.y1 - slot.y0),
        )
    height = min(natural, math.sqrt(budget / layout.aspect))
    width = height * layout.aspect
    sides = [max(MIN_SHEET_SIDE, _round_multiple(side)) for side in (width, height)]
    targets = (width, height)
    while sides[0] * sides[1] > budget:
        # Trim the side furthest above its target. MIN_REFERENCE_PIXELS with the aspect limit
        # means a budget-bound sheet never needs a side below MIN_SHEET_SIDE.
        trimmable = [i for i in (0, 1) if sides[i] > MIN_SHEET_SIDE]
        side = max(trimmable, key=lambda i: sides[i] / targets[i])
        sides[side] -= SIZE_MULTIPLE
    return sides[0], sides[1]


def _round_multiple(value: float) -> int:
    return round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE


def _render(
    layout: _Layout, images: Sequence[Image.Image], budget: int
) -> tuple[Image.Image, list[Box]]:
    width, height = _sheet_size(layout, images, budget)
    # ~4 px on a 1 MP sheet: visible to the model, a negligible share of the pixels.
    gap = max(2, round(min(width, height) / 256))
    sheet = Image.new("RGB", (width, height), SEPARATOR)
    cells: list[Box] = []
    for slot in layout.slots:
        # Shared fractional edges land `gap` apart; edges at 0 and 1 touch the sheet's border.
        x0, y0 = round(slot.x0 * (width + gap)), round(slot.y0 * (height + gap))
        x1, y1 = round(slot.x1 * (width + gap)) - gap, round(slot.y1 * (height + gap)) - gap
        cell = (x0, y0, max(1, x1 - x0), max(1, y1 - y0))
        sheet.paste(BACKGROUND, (x0, y0, x0 + cell[2], y0 + cell[3]))
        cells.append(cell)
    tiles = [_paste_fitted(sheet, image, cell) for image, cell in zip(images, cells, strict=False)]
    return sheet, tiles


def _paste_fitted(sheet: Image.Image, image: Image.Image, cell: Box) -> Box:
    """Letterbox `image` into `cell` (aspect kept, centred) and return where it landed."""
    x, y, cell_width, cell_height = cell
    scale = min(cell_width / max(image.width, 1), cell_height / max(image.height, 1))
    width = min(cell_width, max(1, round(image.width * scale)))
    height = min(cell_height, max(1, round(image.height * scale)))
    # Engine inputs are RGB already; anything else is flattened the way decoding does it.
    tile = to_rgb(image).resize(
        (width, height), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP
    )
    box = (x + (cell_width - width) // 2, y + (cell_height - height) // 2, width, height)
    sheet.paste(tile, box[:2])
    return box
