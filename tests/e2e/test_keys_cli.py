"""`retouch keys`: a created key works, is stored only hashed, and stops working once revoked;
a data dir that does not exist is refused, not made."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from e2e_support import Api, RetouchProcess, database_url
from retouch.auth.keys import AUTH_CACHE_SECONDS


def stored_keys(data_dir: Path) -> str:
    """Everything the api_keys table holds, as text."""
    from sqlalchemy import create_engine, select

    from retouch.jobs.schema import api_keys

    engine = create_engine(database_url(data_dir))
    try:
        with engine.connect() as conn:
            return repr(conn.execute(select(api_keys)).all())
    finally:
        engine.dispose()


def test_keys_cli_and_revocation(api: Api, server: RetouchProcess) -> None:
    output = server.cli("keys", "create", "--name", "temporary")
    key = output.strip().splitlines()[-1]
    assert key.startswith("rtk_") and len(key) >= 4 + 12 + 1 + 43
    temporary = Api(api.base, key)
    assert temporary.status("nope").status_code == 404
    assert "temporary" in server.cli("keys", "list")
    assert key not in stored_keys(server.data_dir)
    sqlite_file = server.data_dir / "retouch.db"
    if sqlite_file.exists():  # the whole file, not only the table
        assert key.encode() not in sqlite_file.read_bytes()
    server.cli("keys", "revoke", "temporary")
    time.sleep(AUTH_CACHE_SECONDS)
    assert temporary.status("nope").status_code == 401


def test_keys_list_of_a_missing_data_dir_exits_2_and_makes_nothing(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RETOUCH_")}
    missing = tmp_path / "typo"
    done = subprocess.run(
        [sys.executable, "-m", "retouch", "keys", "list", "--data-dir", str(missing)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"--data-dir {missing} does not exist" in done.stderr
    assert "`retouch serve`" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
