"""Cancel as the contract says, and exact queue positions."""

from __future__ import annotations

from e2e_support import Api, ImageServer

from ..inprocess import InProcessServer


def test_cancel_queued_running_and_finished(
    api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    body = {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
    with server.held_job(api, resolution="0.5K") as running:
        queued = [api.submit_ok({**body, "seed": n}) for n in range(3)]
        assert [api.status(r).json()["queue_position"] for r in queued] == [0, 1, 2]

        cancelled = api.cancel(queued[0])
        assert cancelled.status_code == 202
        assert cancelled.json() == {
            "request_id": queued[0],
            "status": "cancelled",
            "outcome": "cancelled",
        }
        assert api.cancel(queued[0]).json() == cancelled.json()
        assert [api.status(r).json()["queue_position"] for r in queued[1:]] == [0, 1]

        busy = api.cancel(running)
        assert busy.status_code == 202
        assert busy.json() == {
            "request_id": running,
            "status": "in_progress",
            "outcome": "not_cancellable",
        }

        status = api.status(queued[0]).json()
        assert status["status"] == "cancelled" and "queue_position" not in status
        result = api.result(queued[0]).json()
        assert result["status"] == "cancelled" and "output" not in result
        assert result["finished_at"] is not None

        for request_id in queued[1:]:
            api.cancel(request_id)
    assert api.result(running).json()["status"] == "succeeded"
    done = api.cancel(running).json()
    assert done == {"request_id": running, "status": "completed", "outcome": "not_cancellable"}
    # A cancelled job never starts.
    assert api.result(queued[0]).json()["started_at"] is None


def test_unfinished_result_reports_the_current_state(
    api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    with server.held_job(api):
        request_id = api.submit_ok(
            {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
        )
        early = api.result(request_id).json()
        assert early["status"] == "in_queue"
        assert "output" not in early and early["finished_at"] is None
    assert api.wait(request_id)["status"] == "succeeded"
