from __future__ import annotations

import time
from pathlib import Path

import pytest

from retouch.auth.keys import AUTH_CACHE_SECONDS, KeyStore, hash_key
from retouch.contract.sizes import SIZE_TABLE, closest_ratio, output_size
from retouch.jobs.sql_store import SqlJobStore
from retouch.storage.local import LocalStorage
from retouch.storage.signing import UrlSigner, load_or_create_secret


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1000, 1000), "1:1"),
        ((1920, 1080), "16:9"),
        ((1080, 1920), "9:16"),
        ((2560, 1080), "21:9"),
        ((3000, 2000), "3:2"),
        ((800, 1000), "4:5"),
        ((5000, 100), "21:9"),
        ((100, 5000), "9:16"),
    ],
)
def test_closest_ratio(size: tuple[int, int], ratio: str) -> None:
    assert closest_ratio(*size) == ratio


def test_output_size_uses_the_table() -> None:
    assert output_size("auto", "1K", (640, 640)) == ("1:1", (1024, 1024))
    assert output_size("21:9", "4K", None) == ("21:9", (6336, 2688))
    with pytest.raises(ValueError):
        output_size("auto", "1K", None)
    for sizes in SIZE_TABLE.values():
        assert sizes["4K"] == (sizes["2K"][0] * 2, sizes["2K"][1] * 2)


def test_keys_are_hashed_and_revocable(tmp_path: Path) -> None:
    store = SqlJobStore.open_sqlite(tmp_path / "k.db")
    keys = KeyStore(store.engine)
    record, key = keys.create("alice")
    assert keys.authenticate(key) == record.id
    assert keys.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.authenticate("rtk_" + record.id + "_" + "x" * 43) is None
    assert keys.authenticate("") is None
    assert hash_key(key) != key
    assert [r.id for r in keys.revoke("alice")] == [record.id]
    assert keys.authenticate(key) == record.id  # the cached verdict, for at most a second
    time.sleep(AUTH_CACHE_SECONDS)
    assert keys.authenticate(key) is None
    assert keys.revoke("alice") == []
    store.close()


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
