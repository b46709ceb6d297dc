"""The conditioning cache's rules, on plain values (no torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image

from retouch.engine.conditioning_cache import ConditioningCache, image_key, size_of


@dataclass(frozen=True)
class Blob:
    """Stands for a tensor: what the cache reads of one is its nbytes."""

    nbytes: int


def made(calls: list[str], name: str, nbytes: int = 10) -> Callable[[], Blob]:
    """A computation that records its call in `calls`."""

    def compute() -> Blob:
        calls.append(name)
        return Blob(nbytes)

    return compute


def test_a_value_is_computed_once_then_served() -> None:
    cache = ConditioningCache(100)
    calls: list[str] = []
    first = cache.get_or_compute("a", made(calls, "a"))
    assert cache.get_or_compute("a", made(calls, "again")) is first
    assert calls == ["a"] and (cache.hits, cache.misses) == (1, 1) and cache.bytes == 10


def test_least_recently_used_values_go_first() -> None:
    cache = ConditioningCache(30)
    for key in "abc":
        cache.get_or_compute(key, lambda: Blob(10))
    cache.get_or_compute("a", lambda: Blob(10))  # a is now the most recent
    cache.get_or_compute("d", lambda: Blob(10))  # b goes
    recomputed: list[str] = []
    for key in "acd":
        cache.get_or_compute(key, made(recomputed, key))
    assert recomputed == [] and cache.bytes == 30
    cache.get_or_compute("b", made(recomputed, "b"))
    assert recomputed == ["b"]


def test_a_value_larger_than_the_cache_is_returned_not_kept() -> None:
    cache = ConditioningCache(30)
    cache.get_or_compute("small", lambda: Blob(10))
    big = cache.get_or_compute("big", lambda: Blob(31))
    assert big == Blob(31) and len(cache) == 1 and cache.bytes == 10


def test_zero_bytes_turns_it_off() -> None:
    cache = ConditioningCache(0)
    calls: list[str] = []
    for _ in range(3):
        cache.get_or_compute("a", made(calls, "a", 1))
    assert len(calls) == 3 and len(cache) == 0 and cache.bytes == 0


def test_sizes_of_tuples_add_up() -> None:
    assert size_of((Blob(3), (Blob(4), Blob(5)))) == 12
    assert size_of("no nbytes") == 0


@pytest.mark.parametrize(
    "other",
    [
        Image.new("RGB", (8, 8), (1, 2, 4)),  # one value differs
        Image.new("RGB", (16, 4), (1, 2, 3)),  # same pixels, another shape
        Image.new("RGBA", (8, 8), (1, 2, 3, 255)),
    ],
)
def test_image_keys_tell_pixels_sizes_and_modes_apart(other: Image.Image) -> None:
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    assert image_key(image) == image_key(image.copy())
    assert image_key(image) != image_key(other)
