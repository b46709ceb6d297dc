from __future__ import annotations

import time
from pathlib import Path

from retouch.auth.keys import AUTH_CACHE_SECONDS, KeyStore, hash_key
from retouch.jobs.sql_store import SqlJobStore


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
