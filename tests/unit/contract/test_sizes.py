from __future__ import annotations

import pytest

from retouch.contract.sizes import SIZE_TABLE, closest_ratio, output_size


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1000, 1000), "1:1"),
        ((1920, 1080), "16:9"),
        ((1080, 1920), "9:16"),
        ((2560, 1080), "21:9"),
        ((3000, 2000), "3:2"),
        ((800, 1000), "4:5"),
        ((5000, 100), "21:9"),
        ((100, 5000), "9:16"),
    ],
)
def test_closest_ratio(size: tuple[int, int], ratio: str) -> None:
    assert closest_ratio(*size) == ratio


def test_output_size_uses_the_table() -> None:
    assert output_size("auto", "1K", (640, 640)) == ("1:1", (1024, 1024))
    assert output_size("21:9", "4K", None) == ("21:9", (6336, 2688))
    with pytest.raises(ValueError):
        output_size("auto", "1K", None)
    for sizes in SIZE_TABLE.values():
        assert sizes["4K"] == (sizes["2K"][0] * 2, sizes["2K"][1] * 2)
