"""Outputs in a local folder of the data dir. Names are `<request id>/<file>`; writes are
atomic (temp file + rename) so a reader never sees half a file."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_NAME_PATTERN = re.compile(r"^[0-9a-f-]{36}/[A-Za-z0-9_.-]{1,100}$")


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def is_valid_name(name: str) -> bool:
        return bool(_NAME_PATTERN.match(name)) and ".." not in name

    def path(self, name: str) -> Path:
        if not self.is_valid_name(name):
            raise ValueError(f"invalid output name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        target = self.path(name)
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

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def delete_request(self, request_id: str) -> None:
        shutil.rmtree(self.root / request_id, ignore_errors=True)

    def keep_only(self, request_id: str, names: list[str]) -> None:
        """Remove a request's files other than `names`: leftovers of attempts that died
        between storing their files and finishing the job."""
        folder = self.root / request_id
        keep = {self.path(name) for name in names}
        if folder.is_dir():
            for path in folder.iterdir():
                if path not in keep:
                    path.unlink(missing_ok=True)
