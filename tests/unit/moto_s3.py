"""An S3 stand-in for tests: moto's standalone server on 127.0.0.1, started and stopped by
the test, with a bucket of its own per test. moto checks no signature (a tampered presigned
URL works on it), so tests can show that presigned URLs work, never that bad ones fail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# Any credentials do for moto; set in the environment, as operators set AWS_*.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str

    def new_bucket(self) -> str:
        """A bucket made as operators make theirs, before Retouch uses it."""
        bucket = f"retouch-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.endpoint_url}/{bucket}").raise_for_status()
        return bucket


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """The server, with CREDENTIALS in the environment while it runs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield MotoS3(f"http://{host}:{port}")
        finally:
            server.stop()
