"""Outputs in a local folder of the data dir (the default storage). Names are
`<request id>/<file>`; writes are atomic (temp file + rename) so a reader never sees half a
file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from retouch.storage.base import (
    CHUNK_BYTES,
    FileStat,
    StorageFull,
    checked_name,
    checked_request,
    is_storage_full,
)


class LocalStorage:
    """Satisfies retouch.storage.base.Storage."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / checked_name(name)

    def put(self, name: str, data: bytes) -> None:
        try:
            self._put(name, data)
        except OSError as error:
            if is_storage_full(error):
                raise StorageFull(f"{name} ({len(data)} bytes)", error) from error
            raise

    def _put(self, name: str, data: bytes) -> None:
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of its own per write: two writers of one name (the same upload sent
        # twice at once) must not share it, or one would rename the other's half-written file.
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with open(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # The rename is durable only once the folder is synced: without it a power cut could
        # leave a job marked succeeded whose file is gone.
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def read(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def stat(self, name: str) -> FileStat | None:
        path = self._path(name)
        try:
            result = path.stat()
        except FileNotFoundError:
            return None
        return FileStat(result.st_size, result.st_mtime) if path.is_file() else None

    def stream(self, name: str, start: int, end: int) -> Iterator[bytes]:
        with self._path(name).open("rb") as handle:
            handle.seek(start)
            while start < end:
                chunk = handle.read(min(CHUNK_BYTES, end - start))
                if not chunk:
                    return
                start += len(chunk)
                yield chunk

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def delete_request(self, request_id: str) -> None:
        shutil.rmtree(self.root / checked_request(request_id), ignore_errors=True)

    def keep_only(self, request_id: str, names: list[str]) -> None:
        folder = self.root / checked_request(request_id)
        keep = {self._path(name) for name in names}
        if folder.is_dir():
            for path in folder.iterdir():
                if path not in keep:
                    path.unlink(missing_ok=True)

    def probe(self) -> None:
        # A file made and dropped at once (O_TMPFILE on Linux): the folder is there and
        # writable (not a read-only or missing mount), without fsync or a name to clean up.
        with tempfile.TemporaryFile(dir=self.root):
            pass
