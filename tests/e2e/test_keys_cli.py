"""`retouch keys`: a created key works, is stored only hashed, and stops working once revoked."""

from __future__ import annotations

import time

from e2e_support import Api, RetouchProcess
from retouch.auth.keys import AUTH_CACHE_SECONDS


def test_keys_cli_and_revocation(api: Api, server: RetouchProcess) -> None:
    output = server.cli("keys", "create", "--name", "temporary")
    key = output.strip().splitlines()[-1]
    assert key.startswith("rtk_") and len(key) >= 4 + 12 + 1 + 43
    temporary = Api(api.base, key)
    assert temporary.status("nope").status_code == 404
    assert "temporary" in server.cli("keys", "list")
    database = (server.data_dir / "retouch.db").read_bytes()
    assert key.encode() not in database
    server.cli("keys", "revoke", "temporary")
    time.sleep(AUTH_CACHE_SECONDS)
    assert temporary.status("nope").status_code == 401
