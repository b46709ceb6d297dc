"""The SDK's image inputs (retouch.client.images): bytes, paths and PIL images to bytes with a
sniffed type, and to the data: URIs the server reads; and that the module never imports PIL."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from retouch.client.images import (
    EncodedImage,
    ImageLike,
    encode_image,
    is_pil_image,
    sniff_content_type,
    to_data_uri,
)
from retouch.contract.nano_banana_edit import NanoBananaEditInput
from retouch.media.decode import decode_image
from retouch.media.fetch import _decode_data_uri


def image_bytes(format: str, mode: str = "RGB", size: tuple[int, int] = (12, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else None).save(buffer, format=format)
    return buffer.getvalue()


def reopened(encoded: EncodedImage) -> Image.Image:
    image = Image.open(io.BytesIO(encoded.data))
    image.load()
    return image


def decoded_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64")
    return base64.b64decode(payload, validate=True)


@pytest.mark.parametrize(
    ("format", "content_type", "filename"),
    [("PNG", "image/png", "image.png"), ("JPEG", "image/jpeg", "image.jpg"),
     ("WEBP", "image/webp", "image.webp"), ("GIF", "image/gif", "image.gif"),
     ("BMP", "image/bmp", "image.bmp"), ("TIFF", "image/tiff", "image.tiff")],
)  # fmt: skip
def test_bytes_are_typed_from_their_magic_bytes(
    format: str, content_type: str, filename: str
) -> None:
    data = image_bytes(format)
    encoded = encode_image(data)
    assert encoded == EncodedImage(data, filename, content_type)
    assert encode_image(bytearray(data)).data == data  # type: ignore[arg-type]


def test_avif_and_heic_brands_are_sniffed() -> None:
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        box = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(box)).to_bytes(4, "big") + b"ftyp" + box + b"\0" * 16

    assert sniff_content_type(ftyp(b"avif", b"mif1", b"miaf")) == "image/avif"
    # The generic HEIF brand first, AVIF among the compatible ones: still AVIF.
    assert sniff_content_type(ftyp(b"mif1", b"avif")) == "image/avif"
    assert sniff_content_type(ftyp(b"heic", b"mif1")) == "image/heic"
    assert sniff_content_type(ftyp(b"mif1", b"miaf")) == "image/heif"
    assert sniff_content_type(ftyp(b"isom", b"mp41")) == "application/octet-stream"
    if "AVIF" in Image.SAVE:  # a real file too, where Pillow was built with AVIF
        assert encode_image(image_bytes("AVIF")).content_type == "image/avif"


def test_unknown_bytes_are_an_octet_stream() -> None:
    assert encode_image(b"hello").content_type == "application/octet-stream"
    assert encode_image(b"hello").filename == "image.bin"
    assert encode_image(b"").content_type == "application/octet-stream"


def test_a_path_is_read_with_its_name(tmp_path: Path) -> None:
    data = image_bytes("JPEG")
    path = tmp_path / "holiday photo.jpeg"
    path.write_bytes(data)
    expected = EncodedImage(data, "holiday photo.jpeg", "image/jpeg")
    assert encode_image(path) == expected
    assert encode_image(str(path)) == expected


def test_a_path_is_typed_from_its_bytes_before_its_extension(tmp_path: Path) -> None:
    misnamed = tmp_path / "really-a-png.jpg"
    misnamed.write_bytes(image_bytes("PNG"))
    assert encode_image(misnamed).content_type == "image/png"
    # No magic the sniffer knows: the extension decides, else an octet stream.
    unknown = tmp_path / "scan.jpg"
    unknown.write_bytes(b"not really an image")
    assert encode_image(unknown).content_type == "image/jpeg"
    nameless = tmp_path / "scan.unknownext"
    nameless.write_bytes(b"??")
    assert encode_image(nameless).content_type == "application/octet-stream"


def test_a_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        encode_image(tmp_path / "nope.png")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L"])
def test_a_new_pil_image_is_saved_as_png(mode: str) -> None:
    image = Image.new(mode, (10, 6))
    assert is_pil_image(image)
    encoded = encode_image(image)
    assert (encoded.filename, encoded.content_type) == ("image.png", "image/png")
    again = reopened(encoded)
    assert (again.format, again.mode, again.size) == ("PNG", mode, (10, 6))


def test_a_pil_image_read_from_a_jpeg_stays_a_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "blue").save(path, quality=80)
    with Image.open(path) as image:
        encoded = encode_image(image)
        assert (encoded.filename, encoded.content_type) == ("photo.jpg", "image/jpeg")
        again = reopened(encoded)
        assert (again.format, again.size) == ("JPEG", (64, 48))
        # quality="keep": the original's quantization tables, so no second loss of quality.
        assert again.quantization == image.quantization  # type: ignore[attr-defined]


@pytest.mark.parametrize(("format", "content_type"), [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_a_pil_image_keeps_its_png_or_webp_format(format: str, content_type: str) -> None:
    image = Image.open(io.BytesIO(image_bytes(format)))
    encoded = encode_image(image)
    assert encoded.content_type == content_type
    assert reopened(encoded).format == format


def test_a_pil_image_in_another_format_becomes_png() -> None:
    image = Image.open(io.BytesIO(image_bytes("GIF")))
    assert image.format == "GIF"
    encoded = encode_image(image)
    assert (encoded.content_type, reopened(encoded).format) == ("image/png", "PNG")


@pytest.mark.parametrize(
    ("mode", "saved"), [("RGBA", "RGBA"), ("LA", "LA"), ("P", "P"), ("PA", "RGBA")]
)
def test_a_jpeg_pil_image_in_a_mode_jpeg_cannot_hold_becomes_png(mode: str, saved: str) -> None:
    image = Image.new(mode, (8, 8))
    image.format = "JPEG"  # e.g. a JPEG converted to RGBA, with the format put back
    encoded = encode_image(image)
    assert encoded.content_type == "image/png"
    assert reopened(encoded).mode == saved  # PNG has no PA either


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "LAB", "HSV", "F", "I", "I;16L", "La"])
def test_modes_png_cannot_hold_are_converted(mode: str) -> None:
    encoded = encode_image(Image.new(mode, (8, 8)))
    assert encoded.content_type == "image/png"
    decode_image(encoded.data, max_pixels=10_000)  # and the server reads it


def test_exif_orientation_is_kept(tmp_path: Path) -> None:
    # The server turns images upright by their EXIF orientation: a re-encode must not lose it.
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    path = tmp_path / "portrait.jpg"
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    with Image.open(path) as image:
        encoded = encode_image(image)
    assert reopened(encoded).getexif()[0x0112] == 6
    assert decode_image(encoded.data, max_pixels=10_000).size == (20, 40)


@pytest.mark.parametrize("kind", ["bytes", "path", "pil"])
def test_data_uri_decodes_back_to_the_same_bytes(kind: str, tmp_path: Path) -> None:
    data = image_bytes("PNG")
    path = tmp_path / "in.png"
    path.write_bytes(data)
    values: dict[str, ImageLike] = {"bytes": data, "path": path, "pil": Image.open(path)}
    value = values[kind]
    uri = to_data_uri(value)
    assert uri.startswith("data:image/png;base64,")
    expected = data if kind != "pil" else encode_image(value).data
    assert decoded_data_uri(uri) == expected


def test_data_uri_is_what_the_server_accepts() -> None:
    data = image_bytes("JPEG")
    uri = to_data_uri(data)
    # The contract's check at submit, then the worker's fetch.
    NanoBananaEditInput.model_validate({"prompt": "snow", "image_urls": [uri]})
    assert _decode_data_uri(uri, max_bytes=10**6) == data
    # An unknown type gets no media type, which both accept (the decoder decides).
    unknown = to_data_uri(b"whatever")
    assert unknown.startswith("data:;base64,")
    NanoBananaEditInput.model_validate({"prompt": "snow", "image_urls": [unknown]})
    assert _decode_data_uri(unknown, max_bytes=10**6) == b"whatever"


def test_data_uri_content_type_override() -> None:
    data = image_bytes("PNG")
    assert to_data_uri(data, "image/x-custom").startswith("data:image/x-custom;base64,")
    with pytest.raises(ValueError, match="image/\\* type, not 'text/plain'"):
        to_data_uri(data, "text/plain")


@pytest.mark.parametrize(
    ("value", "name"), [(42, "int"), (None, "NoneType"), ([b"x"], "list"), (3.5, "float")]
)
def test_a_bad_type_raises_type_error_naming_it(value: object, name: str) -> None:
    message = f"image must be a path, bytes or a PIL image, not {name}"
    with pytest.raises(TypeError, match=message):
        encode_image(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        to_data_uri(value)  # type: ignore[arg-type]
    assert not is_pil_image(value)
