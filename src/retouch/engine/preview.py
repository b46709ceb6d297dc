"""The on-disk cache of preview models: tiny random-weight pipelines of the real classes, built
offline in code (one builder module per engine, e.g. preview_flux2_klein), saved once and
reused. Generic over engines; cheap to import (no torch).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREVIEW_DIRNAME = "preview-flux2-klein"
"""Folder name of the default (FLUX.2 [klein]) preview model under data_dir/models; the
registry names every kind's folder the same way: preview-<kind>."""

PreviewBuild = Callable[[], Any]
"""Builds a pipeline in memory; the result must have save_pretrained(folder)."""

_MARKER = "retouch-preview.json"
"""Written last, inside the temporary build folder: its presence means the build completed.
It names the builder and its version and lists every file with its size, so a folder built by
another builder or version, or damaged later, is rebuilt."""

_STALE_TMP_S = 3600.0
"""Leftover build folders older than this come from a crashed build and are removed."""


def ensure_preview_model(
    cache_dir: Path, build: PreviewBuild | None = None, *, version: int | None = None
) -> Path:
    """Return cache_dir holding the pipeline that `build` makes (default: the FLUX.2 [klein]
    preview at its current version), building and saving it there first if needed.

    The build happens in a temporary sibling folder that is renamed into place only when
    complete, so a crash never leaves a half model at cache_dir; a folder there that lacks the
    completion marker (or has another builder's or version's) is replaced.
    """
    if build is None:
        from retouch.engine import preview_flux2_klein

        build = preview_flux2_klein.build_preview_pipeline
        version = preview_flux2_klein.PREVIEW_VERSION if version is None else version
    stamp = {"builder": f"{build.__module__}.{build.__qualname__}", "version": version or 1}
    if _is_complete(cache_dir, stamp):
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(cache_dir), dir=cache_dir.parent))
    try:
        build().save_pretrained(tmp)
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in tmp.rglob("*") if f.is_file()}
        (tmp / _MARKER).write_text(json.dumps({**stamp, "files": files}))
        _replace_dir(tmp, cache_dir, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache_dir


def _is_complete(folder: Path, stamp: dict[str, Any]) -> bool:
    """The marker is there, from this builder and version, and every file it lists has its
    recorded size."""
    try:
        marker = json.loads((folder / _MARKER).read_text())
        if any(marker[key] != value for key, value in stamp.items()):
            return False
        files: dict[str, int] = marker["files"]
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _replace_dir(built: Path, target: Path, stamp: dict[str, Any]) -> None:
    """Move the finished build into place, replacing an incomplete folder there."""
    if target.exists():
        if _is_complete(target, stamp):  # another process finished first: keep its copy
            return
        # Rename the broken folder aside first so the target is never half-deleted.
        trash = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
        os.replace(target, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(built, target)
    except OSError:
        # Lost a race with another builder: fine if the winner's copy is complete.
        if not _is_complete(target, stamp):
            raise


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _remove_stale_builds(target: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for leftover in target.parent.glob(f"{_tmp_prefix(target)}*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue
