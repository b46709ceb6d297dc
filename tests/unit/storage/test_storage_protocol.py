"""retouch.storage.base.Storage as each backend implements it: the local folder and an
S3-compatible bucket (moto's server on 127.0.0.1)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from retouch.config import Settings
from retouch.storage.base import CHUNK_BYTES, Storage, is_valid_name
from retouch.storage.local import LocalStorage
from retouch.storage.open_storage import open_storage, presigner
from retouch.storage.s3 import S3Storage

from ..moto_s3 import REGION, MotoS3, moto_s3

REQUEST = "00000000-0000-0000-0000-000000000000"
OTHER = "11111111-1111-1111-1111-111111111111"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "outputs")
    moto: MotoS3 = request.getfixturevalue("moto")
    s3 = settings(
        tmp_path,
        storage_url=f"s3://{moto.new_bucket()}/some/prefix",
        s3_endpoint_url=moto.endpoint_url,
        s3_region=REGION,
    )
    return open_storage(s3)


def settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path, **fields})


def names_of(storage: Storage, request_id: str, candidates: list[str]) -> list[str]:
    return [name for name in candidates if storage.stat(f"{request_id}/{name}") is not None]


def test_the_settings_choose_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_storage(settings(tmp_path)), LocalStorage)
    assert isinstance(open_storage(settings(tmp_path, storage_url="")), LocalStorage)
    s3 = settings(tmp_path, storage_url="s3://bucket/p", s3_region=REGION)
    assert isinstance(open_storage(s3), S3Storage)
    for bad in ("file:///tmp/x", "s3:///no-bucket", "bucket/prefix"):
        with pytest.raises(ValueError, match="RETOUCH_STORAGE_URL"):
            open_storage(settings(tmp_path, storage_url=bad))
    presigning = settings(tmp_path, storage_url="s3://bucket", s3_presign=True)
    assert presigner(presigning, open_storage(presigning)) is not None
    assert presigner(s3, open_storage(s3)) is None
    with pytest.raises(ValueError, match="RETOUCH_S3_PRESIGN"):
        open_storage(settings(tmp_path, s3_presign=True))
    with pytest.raises(ValueError, match="RETOUCH_S3_PRESIGN"):
        presigner(presigning, LocalStorage(tmp_path))


def test_names_are_checked_before_any_operation(storage: Storage) -> None:
    for name in ("../x.png", "/etc/passwd", "a/b/c.png", f"{REQUEST}/..", f"{REQUEST}/x/../y"):
        assert not is_valid_name(name)
        with pytest.raises(ValueError):
            storage.put(name, b"x")
        with pytest.raises(ValueError):
            storage.stat(name)
    for request_id in ("", "..", "x", f"{REQUEST}/x"):
        with pytest.raises(ValueError):
            storage.delete_request(request_id)


def test_put_read_stat_and_delete(storage: Storage) -> None:
    name = f"{REQUEST}/0-abc.png"
    assert storage.stat(name) is None
    with pytest.raises(FileNotFoundError):
        storage.read(name)
    storage.put(name, b"first")
    storage.put(name, b"second version")  # replaced whole
    assert storage.read(name) == b"second version"
    stat = storage.stat(name)
    assert stat is not None and stat.size == len(b"second version") and stat.modified > 0
    storage.delete(name)
    storage.delete(name)  # a missing file is no error
    assert storage.stat(name) is None


def test_stream_gives_the_range_in_bounded_chunks(storage: Storage) -> None:
    name = f"{REQUEST}/0-big.png"
    data = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 7)
    storage.put(name, data)
    chunks = list(storage.stream(name, 0, len(data)))
    assert b"".join(chunks) == data
    assert len(chunks) > 1 and max(map(len, chunks)) <= 2 * CHUNK_BYTES
    assert b"".join(storage.stream(name, 10, 20)) == data[10:20]
    assert b"".join(storage.stream(name, len(data) - 1, len(data))) == data[-1:]


def test_keep_only_and_delete_request_touch_only_that_request(storage: Storage) -> None:
    files = ["0-aaaa.png", "0-bbbb.png", "1-bbbb.png", "1-cccc.png"]
    for request_id in (REQUEST, OTHER):
        for name in files:
            storage.put(f"{request_id}/{name}", b"x")
    storage.keep_only(REQUEST, [f"{REQUEST}/0-bbbb.png", f"{REQUEST}/1-bbbb.png"])
    assert names_of(storage, REQUEST, files) == ["0-bbbb.png", "1-bbbb.png"]
    storage.delete_request(REQUEST)
    assert names_of(storage, REQUEST, files) == []
    assert names_of(storage, OTHER, files) == files
    storage.delete_request(REQUEST)  # nothing left: no error


def test_concurrent_writes_of_one_name_leave_one_whole_file(storage: Storage) -> None:
    name = f"{REQUEST}/upload.png"
    bodies = [bytes([n]) * 100_000 for n in range(6)]
    threads = [threading.Thread(target=storage.put, args=(name, body)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert storage.read(name) in bodies


def test_s3_presigned_urls_fetch_the_file(moto: MotoS3, tmp_path: Path) -> None:
    """Only that they are made and work: moto accepts tampered and expired ones too."""
    storage = S3Storage.connect(
        moto.new_bucket(), "p", endpoint_url=moto.endpoint_url, region=REGION
    )
    name = f"{REQUEST}/0-abc.png"
    storage.put(name, b"signed bytes")
    url = storage.presigned_url(name, 60)
    assert "X-Amz-Signature=" in url and "/p/" in url
    assert httpx.get(url).content == b"signed bytes"


def test_a_reachable_store_passes_its_probe(storage: Storage) -> None:
    storage.probe()
    storage.put(f"{REQUEST}/a.png", b"x")
    storage.probe()
    assert storage.read(f"{REQUEST}/a.png") == b"x"


def test_the_local_probe_leaves_nothing_in_the_folder(tmp_path: Path) -> None:
    LocalStorage(tmp_path / "outputs").probe()
    assert list((tmp_path / "outputs").iterdir()) == []


def test_a_missing_folder_or_bucket_fails_the_probe(tmp_path: Path, moto: MotoS3) -> None:
    local = LocalStorage(tmp_path / "outputs")
    (tmp_path / "outputs").rmdir()  # an unmounted volume, say
    with pytest.raises(FileNotFoundError):
        local.probe()
    missing = settings(
        tmp_path,
        storage_url="s3://no-such-bucket-here/prefix",
        s3_endpoint_url=moto.endpoint_url,
        s3_region=REGION,
    )
    with pytest.raises(Exception, match=r"(?i)bucket"):
        open_storage(missing).probe()
