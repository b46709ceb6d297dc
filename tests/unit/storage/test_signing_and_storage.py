from __future__ import annotations

import time
from pathlib import Path

import pytest

from retouch.storage.local import LocalStorage
from retouch.storage.signing import UrlSigner, load_or_create_secret


def test_signing_secret_is_made_once(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "signing.key")
    assert load_or_create_secret(tmp_path / "signing.key") == first
    assert len(first) == 32
    assert (tmp_path / "signing.key").stat().st_mode & 0o777 == 0o600


def test_signatures_expire_and_bind_the_name() -> None:
    signer = UrlSigner(b"s" * 32)
    expires, signature = signer.sign("a/b.png", 60)
    assert signer.verify("a/b.png", expires, signature)
    assert not signer.verify("a/c.png", expires, signature)
    assert not signer.verify("a/b.png", expires + 1, signature)
    past, old = signer.sign("a/b.png", -1)
    assert past < time.time() and not signer.verify("a/b.png", past, old)


def test_storage_refuses_path_tricks(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for name in (
        "../x.png",
        "/etc/passwd",
        "a/b/c.png",
        "00000000-0000-0000-0000-000000000000/..",
        "00000000-0000-0000-0000-000000000000/x/../../y",
    ):
        assert not storage.is_valid_name(name)
    good = "00000000-0000-0000-0000-000000000000/0-abc.png"
    storage.put(good, b"data")
    assert storage.path(good).read_bytes() == b"data"


def test_a_short_or_broken_signing_secret_is_refused(tmp_path: Path) -> None:
    for text in ("", "abcd", "not hex at all"):
        (tmp_path / "signing.key").write_text(text)
        with pytest.raises(ValueError, match="signing secret"):
            load_or_create_secret(tmp_path / "signing.key")


def test_keep_only_removes_other_attempts_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    request = "00000000-0000-0000-0000-000000000000"
    for name in ("0-aaaa.png", "0-bbbb.png", "1-bbbb.png"):
        storage.put(f"{request}/{name}", b"x")
    storage.keep_only(request, [f"{request}/0-bbbb.png", f"{request}/1-bbbb.png"])
    assert sorted(p.name for p in (tmp_path / request).iterdir()) == ["0-bbbb.png", "1-bbbb.png"]
