from __future__ import annotations

import time

from retouch.auth.keys import AUTH_CACHE_SECONDS, KeyStore, hash_key
from retouch.jobs.open_store import open_store


def test_keys_are_hashed_and_revocable(database_url: str) -> None:
    store = open_store(database_url, max_attempts=3, webhook_retry_seconds=60.0)
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
