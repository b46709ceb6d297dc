"""combine_references: every input reaches the engine within its reference count and budget."""

from __future__ import annotations

import json
import math
import time

import pytest
from PIL import Image

from retouch.engine.references import (
    BACKGROUND,
    MAX_SHEET_ASPECT,
    MIN_SHEET_SIDE,
    SEPARATOR,
    SIZE_MULTIPLE,
    Box,
    ReferencePlan,
    combine_references,
)

MP = 1024 * 1024
SIZES = [(160, 120), (96, 128), (200, 100), (128, 128), (90, 160)]


def _colour(index: int) -> tuple[int, int, int]:
    """A distinct saturated colour per input, far from the grey background and white lines."""
    return ((index * 67) % 200, (index * 131 + 40) % 200, 255 - (index * 29) % 120)


def _inputs(count: int, sizes: list[tuple[int, int]] | None = None) -> list[Image.Image]:
    sizes = sizes or SIZES
    return [Image.new("RGB", sizes[i % len(sizes)], _colour(i)) for i in range(count)]


def _placements(plan: ReferencePlan) -> dict[int, int]:
    """Input index -> reference index, failing if an input appears twice."""
    where: dict[int, int] = {}
    for index in plan.native:
        assert index not in where
        where[index] = -1
    for sheet in plan.sheets:
        for index in sheet.inputs:
            assert index not in where
            where[index] = sheet.reference
    return where


def _assert_valid_sheet(sheet: Image.Image, budget: int) -> None:
    width, height = sheet.size
    assert sheet.mode == "RGB"
    assert width % SIZE_MULTIPLE == 0 and height % SIZE_MULTIPLE == 0
    assert min(width, height) >= MIN_SHEET_SIDE
    assert width * height <= budget
    assert max(width / height, height / width) <= MAX_SHEET_ASPECT + 0.25  # 16 px rounding


def _assert_tiles_apart(tiles: tuple[Box, ...], size: tuple[int, int]) -> None:
    for i, (x, y, w, h) in enumerate(tiles):
        assert x >= 0 and y >= 0 and x + w <= size[0] and y + h <= size[1]
        for ox, oy, ow, oh in tiles[i + 1 :]:
            assert x + w <= ox or ox + ow <= x or y + h <= oy or oy + oh <= y


@pytest.mark.parametrize("max_references", [1, 3, 4])
@pytest.mark.parametrize("count", range(1, 21))
def test_every_input_reaches_exactly_one_reference(count: int, max_references: int) -> None:
    images = _inputs(count)
    references, plan = combine_references(
        images, max_references=max_references, reference_pixels=MP
    )
    assert len(references) == plan.references == min(count, max_references)
    assert plan.inputs == count
    assert sorted(_placements(plan)) == list(range(count))
    for index in plan.native:
        assert any(ref is images[index] for ref in references)
    for sheet in plan.sheets:
        image = references[sheet.reference]
        assert list(image.size) == list(sheet.size)
        _assert_valid_sheet(image, MP)
        _assert_tiles_apart(sheet.tiles, sheet.size)
        for index, (x, y, w, h) in zip(sheet.inputs, sheet.tiles, strict=True):
            # The input's own colour is at the centre of the tile the plan names.
            pixel = image.getpixel((x + w // 2, y + h // 2))
            assert isinstance(pixel, tuple)
            assert max(abs(a - b) for a, b in zip(pixel, _colour(index), strict=True)) <= 2


@pytest.mark.parametrize("count", range(1, 21))
def test_up_to_the_native_count_nothing_changes(count: int) -> None:
    images = _inputs(count)
    references, plan = combine_references(images, max_references=20, reference_pixels=MP)
    assert all(a is b for a, b in zip(references, images, strict=True))
    assert plan == ReferencePlan(count, count, tuple(range(count)))
    assert not plan.combined


@pytest.mark.parametrize("max_references", [2, 3, 4])
def test_the_first_image_is_kept_untouched(max_references: int) -> None:
    images = [Image.new("RGB", (3000, 2000), (10, 20, 30)), *_inputs(9)]
    before = images[0].tobytes()
    references, plan = combine_references(
        images, max_references=max_references, reference_pixels=MP
    )
    assert references[0] is images[0] and images[0].tobytes() == before
    assert plan.native[0] == 0
    assert all(0 not in sheet.inputs for sheet in plan.sheets)


def test_inputs_are_balanced_across_sheets_in_input_order() -> None:
    _, plan = combine_references(_inputs(20), max_references=4, reference_pixels=MP)
    assert [sheet.inputs for sheet in plan.sheets] == [
        tuple(range(1, 8)),
        tuple(range(8, 14)),
        tuple(range(14, 20)),
    ]
    assert [sheet.reference for sheet in plan.sheets] == [1, 2, 3]


def test_a_group_of_one_stays_a_native_reference() -> None:
    images = _inputs(5)
    references, plan = combine_references(images, max_references=4, reference_pixels=MP)
    assert plan.native == (0, 3, 4)
    assert [sheet.inputs for sheet in plan.sheets] == [(1, 2)]
    assert references[0] is images[0]
    assert references[2] is images[3] and references[3] is images[4]


@pytest.mark.parametrize("count", [2, 3, 5, 20])
def test_single_reference_sheet_puts_the_first_image_in_the_largest_cell(count: int) -> None:
    images = _inputs(count, [(400, 300)])
    references, plan = combine_references(images, max_references=1, reference_pixels=MP)
    (sheet,) = plan.sheets
    assert len(references) == 1 and sheet.reference == 0
    assert sheet.lead == 0 and sheet.inputs == tuple(range(count))
    areas = [w * h for _, _, w, h in sheet.tiles]
    assert areas[0] == max(areas)
    if count > 2:
        assert areas[0] > 2 * max(areas[1:])


@pytest.mark.parametrize("budget", [128 * 128, 512 * 512, 1_000_000, MP, 1536 * 1024])
@pytest.mark.parametrize("max_references", [1, 2, 4])
def test_sheets_stay_within_the_pixel_budget(budget: int, max_references: int) -> None:
    large = _inputs(3, [(4000, 3000), (3000, 4000), (2048, 2048)])
    images = [large[i % 3] for i in range(13)]
    references, plan = combine_references(
        images, max_references=max_references, reference_pixels=budget
    )
    for sheet in plan.sheets:
        _assert_valid_sheet(references[sheet.reference], budget)
        # Large inputs fill the budget rather than leaving it unused.
        assert math.prod(sheet.size) > 0.8 * budget


EXTREMES = [(4000, 100), (100, 4000), (16, 16), (1200, 900), (16, 16), (4000, 100)]


@pytest.mark.parametrize("max_references", [1, 2, 3])
def test_extreme_aspects_and_tiny_inputs_are_letterboxed(max_references: int) -> None:
    images = _inputs(len(EXTREMES), EXTREMES)
    references, plan = combine_references(
        images, max_references=max_references, reference_pixels=MP
    )
    assert sorted(_placements(plan)) == list(range(len(EXTREMES)))
    for sheet in plan.sheets:
        _assert_valid_sheet(references[sheet.reference], MP)
        _assert_tiles_apart(sheet.tiles, sheet.size)
        for index, (_, _, w, h) in zip(sheet.inputs, sheet.tiles, strict=True):
            source_w, source_h = EXTREMES[index]
            # Aspect kept up to rounding each side by half a pixel (and a 1 px minimum).
            assert abs(w * source_h - h * source_w) <= max(source_w, source_h)


def test_a_sheet_of_tiny_inputs_stays_small() -> None:
    references, plan = combine_references(
        _inputs(5, [(16, 16)]), max_references=1, reference_pixels=MP
    )
    assert references[0].size == (MIN_SHEET_SIDE, MIN_SHEET_SIDE)
    assert plan.sheets[0].size == (MIN_SHEET_SIDE, MIN_SHEET_SIDE)


def test_only_background_and_separators_surround_the_tiles() -> None:
    references, plan = combine_references(_inputs(8), max_references=2, reference_pixels=MP)
    (sheet,) = plan.sheets
    image = references[sheet.reference].copy()
    for x, y, w, h in sheet.tiles:
        image.paste(BACKGROUND, (x, y, x + w, y + h))
    colours = {colour for _, colour in image.getcolors(maxcolors=16) or []}
    assert colours == {BACKGROUND, SEPARATOR}


def test_non_rgb_inputs_become_rgb_tiles() -> None:
    images = [
        Image.new("RGB", (100, 100), (1, 2, 3)),
        Image.new("RGBA", (100, 80), (200, 0, 0, 0)),
        Image.new("L", (80, 100), 30),
        Image.new("P", (90, 90)),
    ]
    references, plan = combine_references(images, max_references=2, reference_pixels=MP)
    assert references[1].mode == "RGB"
    x, y, w, h = plan.sheets[0].tiles[0]
    # Fully transparent red is composited onto white, as decoding does.
    assert references[1].getpixel((x + w // 2, y + h // 2)) == (255, 255, 255)


def test_output_is_deterministic() -> None:
    images = _inputs(17, EXTREMES + SIZES)
    first, first_plan = combine_references(images, max_references=3, reference_pixels=MP)
    copies = [image.copy() for image in images]
    second, second_plan = combine_references(copies, max_references=3, reference_pixels=MP)
    assert first_plan == second_plan
    assert [image.tobytes() for image in first] == [image.tobytes() for image in second]


def test_plan_is_json() -> None:
    _, plan = combine_references(_inputs(20), max_references=4, reference_pixels=MP)
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["inputs"] == 20 and data["references"] == 4 and data["native"] == [0]
    first = data["sheets"][0]
    assert set(first) == {"reference", "inputs", "grid", "size", "lead", "tiles"}
    assert first["reference"] == 1 and first["inputs"] == list(range(1, 8))
    assert first["lead"] is None
    cols, rows = first["grid"]
    assert cols * rows >= len(first["inputs"]) > cols * (rows - 1)
    assert len(first["tiles"]) == 7 and all(len(tile) == 4 for tile in first["tiles"])
    lone = combine_references(_inputs(1), max_references=4, reference_pixels=MP)[1]
    assert lone.as_dict() == {"inputs": 1, "references": 1, "native": [0], "sheets": []}


def test_empty_input_and_bad_limits() -> None:
    assert combine_references([], max_references=4, reference_pixels=MP) == (
        [],
        ReferencePlan(0, 0, ()),
    )
    with pytest.raises(ValueError, match="max_references"):
        combine_references(_inputs(2), max_references=0, reference_pixels=MP)
    with pytest.raises(ValueError, match="reference_pixels"):
        combine_references(_inputs(2), max_references=1, reference_pixels=64 * 64)


@pytest.mark.parametrize("max_references", [1, 4])
def test_twenty_four_megapixel_inputs_are_fast(max_references: int) -> None:
    noise = Image.effect_noise((2400, 1700), 60)
    photo = Image.merge("RGB", (noise, noise.transpose(Image.Transpose.ROTATE_180), noise))
    images = [photo if i % 2 else photo.transpose(Image.Transpose.ROTATE_90) for i in range(20)]
    combine_references(images[:3], max_references=1, reference_pixels=MP)  # warm-up
    start = time.perf_counter()
    combine_references(images, max_references=max_references, reference_pixels=MP)
    # ~0.12-0.18 s on a 2-core CI box; the bound leaves room for a loaded machine.
    assert time.perf_counter() - start < 1.0
