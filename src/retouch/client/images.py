"""What a user hands the SDK as an image (a file path, the file's bytes, or a PIL image) turned
into bytes to upload or a `data:` URI to put in `image_urls`.

It exists so that every entry point takes the same three kinds of input and names them the
same way, and so that the SDK still never imports Pillow itself: a PIL image is recognised only
when its caller has already imported PIL (see `is_pil_image`), and saved through its own
`save` method. Content types are sniffed from the bytes' magic numbers, not trusted from a file
name. The server decodes JPEG, PNG and WEBP (HEIF where pillow-heif is installed); the other
types sniffed here are named correctly so the server's refusal is clear, not guessed at."""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:
    from PIL import Image

ImageLike: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image"
"""A path to an image file, the file's bytes, or a PIL image."""

OCTET_STREAM: Final = "application/octet-stream"

# A content type's usual file extension, for names made up here ("image.png").
_EXTENSIONS: Final = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/heif": "heif",
    OCTET_STREAM: "bin",
}

# ISO base media file brands (the `ftyp` box): AVIF first, since an AVIF file often lists the
# generic HEIF brand `mif1` too.
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1"})

# Pillow modes each format can save as is (Pillow's JPEG and PNG plugins); any other mode
# needs a conversion first.
_JPEG_MODES: Final = frozenset({"1", "L", "RGB", "RGBX", "CMYK", "YCbCr"})
_PNG_MODES: Final = frozenset({"1", "L", "LA", "I;16", "I;16B", "P", "RGB", "RGBA"})
# What a PIL image is saved as when its own format is one of these; anything else becomes PNG.
_SAVE_FORMATS: Final = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_QUALITY: Final = 95


@dataclass(frozen=True)
class EncodedImage:
    """An image as bytes, with a file name and content type for a multipart upload."""

    data: bytes
    filename: str
    content_type: str


def is_pil_image(value: object) -> bool:
    """Whether `value` is a PIL image, without importing PIL: whoever holds one has imported
    `PIL.Image` already, so the class is looked up in `sys.modules`."""
    module = sys.modules.get("PIL.Image")
    image_class = getattr(module, "Image", None)
    return isinstance(image_class, type) and isinstance(value, image_class)


def sniff_content_type(data: bytes) -> str:
    """The image type `data` starts like (`image/png`…), or `application/octet-stream`."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:2] == b"BM" and len(data) >= 14:
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    return OCTET_STREAM


def _sniff_ftyp(data: bytes) -> str:
    # Box: size (4 bytes), "ftyp", major brand, minor version (4), compatible brands (4 each).
    size = min(int.from_bytes(data[:4], "big"), len(data), 256)
    brands = {data[8:12]} | {data[at : at + 4] for at in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if brands & _HEIC_BRANDS:
        return "image/heic"
    if brands & _HEIF_BRANDS:
        return "image/heif"
    return OCTET_STREAM


def encode_image(value: ImageLike) -> EncodedImage:
    """`value` as bytes with a file name and content type.

    - bytes: as given, typed from their magic bytes, named `image.<ext>`;
    - a path (`str` or `os.PathLike`): the file's bytes and name, typed from the bytes (else
      from the extension); a missing file raises FileNotFoundError;
    - a PIL image: saved in its own `format` when that is JPEG, PNG or WEBP (a JPEG at its
      original quality, others at quality 95), else as PNG; a mode JPEG cannot hold (RGBA, LA,
      P…) is saved as PNG. EXIF (orientation, which the server applies) and the ICC profile
      are kept.

    A `str` is always a path: URLs (http, https, data:) go into `image_urls` as they are."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        content_type = sniff_content_type(data)
        return EncodedImage(data, f"image.{_EXTENSIONS[content_type]}", content_type)
    if isinstance(value, str | os.PathLike):
        return _encode_file(Path(os.fspath(value)).expanduser())
    if is_pil_image(value):
        return _encode_pil(value)
    raise TypeError(f"image must be a path, bytes or a PIL image, not {type(value).__name__}")


def _encode_file(path: Path) -> EncodedImage:
    data = path.read_bytes()
    content_type = sniff_content_type(data)
    if content_type == OCTET_STREAM:
        guessed, _ = mimetypes.guess_type(path.name)
        content_type = guessed or OCTET_STREAM
    return EncodedImage(data, path.name, content_type)


def _encode_pil(source: Image.Image) -> EncodedImage:
    image = source
    own_format = (image.format or "").upper()
    save_format = own_format if own_format in _SAVE_FORMATS else "PNG"
    if save_format == "JPEG" and image.mode not in _JPEG_MODES:
        save_format = "PNG"
    options: dict[str, object] = {}
    for key in ("exif", "icc_profile"):
        if image.info.get(key):
            options[key] = image.info[key]
    if save_format == "JPEG":
        # "keep" reuses the original's quantization tables and subsampling: no extra loss.
        # Pillow allows it only for an image read from a JPEG (format and tables set).
        keep = own_format == "JPEG" and getattr(image, "quantization", None)
        options["quality"] = "keep" if keep else _QUALITY
    elif save_format == "WEBP":
        options["quality"] = _QUALITY
    elif image.mode not in _PNG_MODES:
        # CMYK, YCbCr, LAB, HSV, F, I (32-bit), I;16L…: PNG holds none of them.
        image = image.convert(_png_mode(image))
    buffer = io.BytesIO()
    image.save(buffer, format=save_format, **options)
    content_type = _SAVE_FORMATS[save_format]
    filename = f"image.{_EXTENSIONS[content_type]}"
    original = getattr(source, "filename", "")
    if save_format == own_format and isinstance(original, str) and original:
        filename = Path(original).name
    return EncodedImage(buffer.getvalue(), filename, content_type)


def _png_mode(image: Image.Image) -> str:
    if image.mode.startswith("I"):
        return "I;16"  # integer greyscale keeps its depth (clipped to 16 bits)
    if image.mode == "La":
        return "LA"  # premultiplied: Pillow converts it to nothing else
    if image.has_transparency_data:  # not "A" in the bands: LAB has an A band, not alpha
        return "RGBA"
    return "RGB"


def to_data_uri(value: ImageLike, content_type: str | None = None) -> str:
    """`value` (see `encode_image`) as `data:<type>;base64,<data>`, the form the server reads
    in `image_urls`. `content_type` overrides the sniffed type; it must be `image/*`, since
    the server refuses anything else. Bytes of no type sniffed here get no type at all
    (`data:;base64,…`), which the server accepts and identifies itself."""
    encoded = encode_image(value)
    if content_type is not None:
        media_type = content_type.strip()
        if not media_type.lower().startswith("image/"):
            raise ValueError(
                f"content_type must be an image/* type, not {content_type!r}: "
                "the server refuses other data: URIs"
            )
    elif encoded.content_type.startswith("image/"):
        media_type = encoded.content_type
    else:
        media_type = ""
    return f"data:{media_type};base64,{base64.b64encode(encoded.data).decode('ascii')}"
