"""Multi-tenant operations over real HTTP, with the CLI an operator uses: keys with roles
and limits, fair claims across keys, 429001 for each submit limit, the admin view, and a
revocation that ends a key's work in every process within 2 s."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from e2e_support import Api, ImageServer, RetouchProcess, server_env, worker_process


def created_key(server: RetouchProcess, *args: str) -> str:
    return server.cli("keys", "create", *args).strip().splitlines()[-1]


def admin_view(admin: Api, **params: str) -> dict:  # type: ignore[type-arg]
    response = httpx.get(
        f"{admin.base}/v1/admin/requests", params=params, headers=admin.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def eventually(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.1)


def test_limits_fairness_admin_and_revocation(data_dir: Path, image_server: ImageServer) -> None:
    env = server_env(RETOUCH_KEY_SUBMIT_RATE="3/minute", RETOUCH_CANCEL_RUNNING="1")
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    worker: subprocess.Popen[str] | None = None
    try:
        default = Api(server.base, server.read_first_key())
        admin = Api(server.base, created_key(server, "--name", "ops", "--admin"))
        busy = Api(
            server.base,
            created_key(server, "--name", "busy", "--rate", "1000/minute", "--max-queued", "12"),
        )
        light = Api(server.base, created_key(server, "--name", "light"))
        assert "admin" in server.cli("keys", "list") and "max queued 12" in server.cli(
            "keys", "list"
        )
        body = {
            "prompt": "x",
            "image_urls": [image_server.url("/square.png")],
            "resolution": "0.5K",
        }

        # The server's default rate (3/minute) for a key without its own.
        for _ in range(3):
            default.submit_ok(body)
        limited = default.submit(body)
        assert limited.status_code == 429 and limited.json()["error_code"] == 429001
        assert "3/minute" in limited.json()["error_message"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60

        # The key's own queue cap.
        backlog = [busy.submit_ok(body) for _ in range(12)]
        full = busy.submit(body)
        assert full.status_code == 429 and "12 jobs queued" in full.json()["error_message"]
        assert full.headers["Retry-After"] == "5"

        # Fair order: the light key's one job is next after the head of each key's queue.
        light_job = light.submit_ok(body)
        assert light.status(light_job).json()["queue_position"] <= 2

        # Admin view and roles.
        view = admin_view(admin, status="in_queue")
        counts = {k["name"]: k for k in view["keys"]}
        assert counts["busy"]["queued"] == 12 and counts["light"]["queued"] == 1
        refused = httpx.get(f"{server.base}/v1/admin/requests", headers=light.headers)
        assert refused.status_code == 403 and refused.json()["error_code"] == 403001

        # Edited limits apply without a restart.
        server.cli("keys", "edit", "light", "--max-queued", "1")
        eventually(lambda: light.submit(body).status_code == 429, 3)

        # A worker starts: the light key's job starts within the first claims, not after
        # the busy key's backlog.
        worker = worker_process(data_dir, env)
        light.wait(light_job, timeout=180)
        started = sorted(
            (r["started_at"], r["key_id"])
            for r in admin_view(admin, limit="100")["requests"]
            if r["started_at"]
        )
        light_id = light.key.split("_")[1]
        assert [key for _, key in started].index(light_id) <= 3

        # Revocation: the busy key's queued jobs are cancelled, its requests refused.
        server.cli("keys", "revoke", "busy")
        eventually(lambda: busy.status(backlog[-1]).status_code == 401, 2)
        after = {k["name"]: k for k in admin_view(admin)["keys"]}
        assert after["busy"]["revoked"] and after["busy"]["queued"] == 0
        assert after["busy"]["cancelled"] >= 1
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        server.stop()
