"""Admin keys: the queue view of every key's jobs (filters, per-key counts and storage), the
workers' request ids shown only to their owner or an admin, and an admin's cancel of any
job; user keys get 403001 from admin routes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from e2e_support import Api

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server

BODY = {"prompt": "make it blue", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}


@pytest.fixture
def tenants(tmp_path: Path) -> Iterator[tuple[InProcessServer, Api, Api, Api]]:
    with in_process_server(tmp_path / "data") as server:
        keys = server.services.keys
        admin = server.api(keys.create("ops", role="admin")[1])
        alice = server.api(keys.create("alice")[1])
        bob = server.api(keys.create("bob")[1])
        yield server, admin, alice, bob


def key_id(api: Api) -> str:
    return api.key.split("_")[1]


def admin_view(api: Api, **params: str) -> dict:  # type: ignore[type-arg]
    response = api.http.get(f"{api.base}/v1/admin/requests", params=params, headers=api.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_admin_view_lists_every_keys_jobs_with_counts(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    server, admin, alice, bob = tenants
    with server.held_job(alice) as running:
        queued = [bob.submit_ok(BODY) for _ in range(2)]
        view = admin_view(admin)
        listed = {r["request_id"]: r for r in view["requests"]}
        assert set(listed) == {running, *queued}
        assert listed[running]["key_id"] == key_id(alice)
        assert listed[running]["status"] == "in_progress" and listed[running]["worker_id"]
        assert [listed[q]["queue_position"] for q in queued] == [0, 1]
        by_key = {k["key_id"]: k for k in view["keys"]}
        assert by_key[key_id(alice)]["running"] == 1
        assert by_key[key_id(bob)]["queued"] == 2 and by_key[key_id(bob)]["name"] == "bob"
        assert by_key[key_id(admin)]["role"] == "admin"
        only_bob = admin_view(admin, key_id=key_id(bob), status="in_queue")
        assert {r["request_id"] for r in only_bob["requests"]} == set(queued)
        assert [k["key_id"] for k in only_bob["keys"]] == [key_id(bob)]
    for request_id in queued:
        bob.wait(request_id)
    done = {k["key_id"]: k for k in admin_view(admin)["keys"]}
    assert done[key_id(bob)]["succeeded"] == 2
    assert done[key_id(bob)]["output_bytes"] > 0


def test_a_page_of_the_admin_view_and_a_bad_filter(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    _, admin, alice, _ = tenants
    ids = [alice.submit_ok({**BODY, "seed": n}) for n in range(3)]
    for request_id in ids:
        alice.wait(request_id)
    first = admin_view(admin, limit="2")
    assert [r["request_id"] for r in first["requests"]] == ids[::-1][:2]
    rest = admin_view(admin, limit="2", cursor=first["next_cursor"])
    assert [r["request_id"] for r in rest["requests"]] == [ids[0]]
    bad = admin.http.get(
        f"{admin.base}/v1/admin/requests", params={"status": "done"}, headers=admin.headers
    )
    assert bad.status_code == 422 and bad.json()["error_code"] == 422001
    assert "status" in bad.text


def test_user_keys_get_403_from_the_admin_view(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    _, _, alice, _ = tenants
    response = alice.http.get(f"{alice.base}/v1/admin/requests", headers=alice.headers)
    assert response.status_code == 403
    assert response.json()["error_code"] == 403001
    assert "--admin" in response.json()["error_message"]
    anonymous = alice.http.get(f"{alice.base}/v1/admin/requests")
    assert anonymous.status_code == 401


def test_workers_show_request_ids_to_their_owner_and_admins_only(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    server, admin, alice, bob = tenants

    def current_jobs(api: Api) -> list[str | None]:
        response = api.http.get(f"{api.base}/v1/workers", headers=api.headers)
        assert response.status_code == 200
        return [worker.get("current_job") for worker in response.json()["workers"]]

    with server.held_job(alice) as running:
        # The heartbeat names the job within its interval.
        server.worker._heartbeat_now()
        assert current_jobs(alice) == [running]
        assert current_jobs(admin) == [running]
        assert current_jobs(bob) == [None]


def test_an_admin_cancels_any_job_and_a_user_only_its_own(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    server, admin, alice, bob = tenants
    with server.held_job(alice):
        queued = bob.submit_ok(BODY)
        refused = alice.cancel(queued)
        assert refused.status_code == 404
        cancelled = admin.cancel(queued)
        assert cancelled.status_code == 202 and cancelled.json()["outcome"] == "cancelled"
    logs = server.services.store.logs(queued)
    assert any("admin" in line.message for line in logs)
    assert bob.status(queued).json()["status"] == "cancelled"


def queue_view(api: Api, **params: str) -> dict:  # type: ignore[type-arg]
    response = api.http.get(f"{api.base}/v1/admin/queue", params=params, headers=api.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_queue_overview_shows_each_endpoints_queue_and_the_failures(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    server, admin, alice, bob = tenants
    # Nothing listens on the app's port: fetching this input fails the job.
    failed = alice.wait(alice.submit_ok({**BODY, "image_urls": [f"{server.base}/nothing.png"]}))
    assert failed["status"] == "failed", failed
    models = admin.http.get(f"{admin.base}/v1/models", headers=admin.headers).json()["models"]
    served = sorted(model["id"] for model in models)
    idle = queue_view(admin)
    assert [e["endpoint"] for e in idle["endpoints"]] == served
    assert all(e["queued"] == e["running"] == 0 for e in idle["endpoints"])
    assert all(e["oldest_queued_request"] is None for e in idle["endpoints"])
    with server.held_job(alice) as running:
        queued = [bob.submit_ok(BODY) for _ in range(2)]
        view = queue_view(admin)
        listed = {r["request_id"]: r for r in admin_view(admin)["requests"]}
    (endpoint,) = [e for e in view["endpoints"] if e["endpoint"] == "google/nano-banana-2/edit"]
    assert endpoint["queued"] == 2 and endpoint["running"] == 1
    assert endpoint["oldest_queued_request"] == queued[0]
    assert endpoint["oldest_queued_at"] == listed[queued[0]]["created_at"]
    assert 0 <= endpoint["oldest_wait_seconds"] < 120
    assert running not in queued
    assert view["window_seconds"] == 3600
    assert view["failures"] == [
        {
            "code": failed["error"]["code"],
            "count": 1,
            "last_at": failed["finished_at"],
            "last_request": failed["request_id"],
            "last_message": failed["error"]["message"],
        }
    ]
    since = datetime.fromisoformat(view["failures_since"])
    assert abs((datetime.now(UTC) - since).total_seconds() - 3600) < 60
    assert queue_view(admin, window="60")["window_seconds"] == 60


def test_the_queue_overview_is_for_admins_and_checks_its_window(
    tenants: tuple[InProcessServer, Api, Api, Api],
) -> None:
    _, admin, alice, _ = tenants
    url = f"{admin.base}/v1/admin/queue"
    user = alice.http.get(url, headers=alice.headers)
    assert user.status_code == 403 and user.json()["error_code"] == 403001
    assert alice.http.get(url).status_code == 401
    for window in ("10", "abc", str(8 * 86400)):
        bad = admin.http.get(url, params={"window": window}, headers=admin.headers)
        assert bad.status_code == 422 and bad.json()["error_code"] == 422001, bad.text
        # FastAPI's query errors read `query.<name>` here, as for every query parameter.
        assert [entry["path"] for entry in bad.json()["detail"]] == [["query", "window"]]
