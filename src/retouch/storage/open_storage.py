"""Opening the file store the settings name: the data dir's outputs folder by default, an
S3-compatible bucket for RETOUCH_STORAGE_URL=s3://bucket/prefix."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from retouch.config import Settings
from retouch.storage.base import Storage
from retouch.storage.local import LocalStorage

_PRESIGN_NEEDS_S3 = "RETOUCH_S3_PRESIGN=true needs RETOUCH_STORAGE_URL=s3://BUCKET"


def open_storage(settings: Settings) -> Storage:
    if settings.storage_url is None:
        if settings.s3_presign:
            raise ValueError(_PRESIGN_NEEDS_S3)
        return LocalStorage(settings.outputs_dir)
    parts = urllib.parse.urlsplit(settings.storage_url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(
            f"RETOUCH_STORAGE_URL={settings.storage_url!r}: expected s3://BUCKET[/PREFIX], or "
            "unset for the local folder"
        )
    # Imported here: a local setup never loads the S3 client.
    from retouch.storage.s3 import S3Storage

    return S3Storage.connect(
        parts.netloc,
        parts.path.strip("/") or None,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
    )


def presigner(settings: Settings, storage: Storage) -> Callable[[str, int], str] | None:
    """What makes the result's output URLs when RETOUCH_S3_PRESIGN is on; None for ours."""
    if not settings.s3_presign:
        return None
    presign: Callable[[str, int], str] | None = getattr(storage, "presigned_url", None)
    if presign is None:
        raise ValueError(_PRESIGN_NEEDS_S3)
    return presign
