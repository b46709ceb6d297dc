"""Recognising our own signed file URLs (uploads and outputs)."""

from __future__ import annotations

import re
import secrets

from retouch.storage.own_files import own_file
from retouch.storage.signing import UrlSigner


def test_own_file_recognises_only_urls_we_signed() -> None:
    signer = UrlSigner(secrets.token_bytes(32))
    name = "0b5f3e9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b/upload.png"

    def url(base: str, ttl: int = 60, file: str = name) -> str:
        expires, signature = signer.sign(file, ttl)
        return f"{base}/v1/files/{file}?expires={expires}&sig={signature}"

    for base in ("http://127.0.0.1:8000", "https://edit.example.com/prefix"):
        found = own_file(url(base), signer)
        assert found is not None and found.name == name and not found.expired
    expired = own_file(url("http://h", ttl=-5), signer)
    assert expired is not None and expired.expired
    good = url("http://h")
    for other in (
        good.replace("sig=", "sig=0"),  # bad signature
        good.replace("sig=", "sig=\u00e9"),  # non-ASCII (compare_digest would raise)
        good.replace("/v1/files/", "/v2/files/"),
        good.replace("http://", "ftp://"),
        good.split("&")[0],  # no sig
        re.sub(r"expires=\d+", "expires=" + "9" * 5000, good),  # too long for int()
        good + "&sig=0",  # two signatures
        url("http://h", file="not-a-request-id/upload.png"),  # not a storage name
        "data:image/png;base64,AAAA",
    ):
        assert own_file(other, signer) is None, other
