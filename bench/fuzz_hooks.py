"""Schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS by fuzz_api.py): data
for what the OpenAPI document names but a JSON Schema cannot spell out, so that schema-valid
requests are valid requests: an `image_uri` (the contract's format for image_urls: an http(s)
URL or a data: URI) and the image bytes of an upload."""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from hypothesis.provisional import urls
from PIL import Image


def _encoded(size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


_sizes = st.tuples(st.integers(1, 64), st.integers(1, 64))
_colors = st.tuples(*(st.integers(0, 255),) * 3)


def _images(fmt: str) -> st.SearchStrategy[bytes]:
    return st.builds(_encoded, _sizes, _colors, st.just(fmt))


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


_data_uris = _images("PNG").map(_data_uri)

schemathesis.openapi.format("image_uri", urls() | _data_uris)
for media_type, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")):
    schemathesis.openapi.media_type(media_type, _images(fmt))
