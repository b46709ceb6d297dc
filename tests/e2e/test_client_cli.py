"""The client commands of `retouch`, run as processes against a real server: outputs, JSON,
warnings, exit codes, resuming after a timeout, the server's bodies as sent, where the URL
and key come from, and the help."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from client_support import SMALL, ScriptedServer, client_env, occupy_worker, retouch
from e2e_support import Api, ImageServer, RetouchProcess, make_image

# On SQLite only: the client commands speak HTTP: the server's job store plays no part.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def env(server: RetouchProcess, api: Api, tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path, RETOUCH_URL=server.base, RETOUCH_API_KEY=api.key)


SMALL_FLAGS = ("--resolution", "0.5K", "--aspect-ratio", "1:1")


def submitted_id(stderr: str) -> str:
    match = re.search(r"request (\S+) submitted \(resume with: retouch wait \1\)", stderr)
    assert match, stderr
    return match.group(1)


def test_edit_uploads_a_local_file_and_saves_every_output(
    env: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(300, 200))
    out = tmp_path / "out"
    done = retouch(
        "edit",
        "make it snow",
        str(photo),
        image_server.url("/square.png"),
        "-o",
        str(out),
        "--aspect-ratio",
        "16:9",
        "--resolution",
        "0.5K",
        "--num-images",
        "2",
        "--format",
        "webp",
        "--seed",
        "7",
        "--safety-tolerance",
        "5",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    request_id = submitted_id(done.stderr)
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert [path.name for path in paths] == [f"{request_id}-{n}.webp" for n in (0, 1)]
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("WEBP", (688, 384))


def test_edit_json(env: dict[str, str], image_server: ImageServer, tmp_path: Path) -> None:
    done = retouch(
        "edit",
        "x",
        image_server.url("/square.png"),
        "--resolution",
        "0.5K",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "succeeded" and body["result"]["request_id"] == body["request_id"]
    assert body["files"] == [f"{body['request_id']}-0.png"]
    assert (tmp_path / body["files"][0]).is_file()
    assert body["result"]["output"]["images"]


def test_run_takes_the_input_json_from_a_flag_a_file_or_standard_input(
    env: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(120, 80))
    # As the API page writes it; a relative path is a file in the current folder.
    payload = {"prompt": "make it snow", "image_urls": ["photo.png"], **SMALL}
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    endpoint = "google/nano-banana-2/edit"
    from_file = retouch("run", endpoint, "--input-file", "payload.json", env=env, cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    request_id = submitted_id(from_file.stderr)
    assert from_file.stdout.splitlines() == [str(Path(f"{request_id}-0.png"))]
    assert (tmp_path / f"{request_id}-0.png").is_file()
    assert "warning: preview model" in from_file.stderr

    from_stdin = retouch(
        "run", endpoint, "-f", "-", "--json", env=env, cwd=tmp_path, stdin=json.dumps(payload)
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["status"] == "succeeded"

    # --no-download: the outputs' URLs, nothing saved.
    out = tmp_path / "none"
    urls = retouch(
        "run",
        endpoint,
        "--input",
        json.dumps(payload),
        "--no-download",
        "-o",
        str(out),
        env=env,
        cwd=tmp_path,
    )
    assert urls.returncode == 0, urls.stderr
    assert [line.split("?")[0].rsplit(".", 1)[-1] for line in urls.stdout.splitlines()] == ["png"]
    assert urls.stdout.startswith("http") and not out.exists()


def test_no_wait_prints_the_id_and_wait_resumes(
    env: dict[str, str], api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    occupy_worker(api, image_server, seconds=3)
    queued = retouch(
        "edit", "x", image_server.url("/square.png"), *SMALL_FLAGS, "--no-wait", env=env
    )
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    assert submitted_id(queued.stderr) == request_id
    assert api.status(request_id).json()["status"] == "in_queue"
    as_json = retouch(
        "run",
        "google/nano-banana-2/edit",
        "--input",
        json.dumps({"prompt": "x", "image_urls": [image_server.url("/square.png")], **SMALL}),
        "--no-wait",
        "--json",
        env=env,
    )
    assert as_json.returncode == 0, as_json.stderr
    submission = json.loads(as_json.stdout)
    assert submission["status_url"].endswith(f"/{submission['request_id']}/status")
    resumed = retouch("wait", request_id, "-o", str(tmp_path), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(tmp_path / f"{request_id}-0.png")


def test_run_of_an_endpoint_this_server_does_not_serve_exits_2(env: dict[str, str]) -> None:
    unknown = retouch(
        "run",
        "acme/model/variant/edit",
        "--input",
        '{"prompt": "x", "image_urls": ["https://example.com/a.png"]}',
        env=env,
    )
    assert unknown.returncode == 2 and "error 400001: " in unknown.stderr
    assert (
        "acme/model/variant/edit" in unknown.stderr
        and "google/nano-banana-2/edit" in unknown.stderr
    )


def test_exit_codes_of_errors(
    env: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    square = image_server.url("/square.png")
    bad_key = retouch("status", "abc", "--api-key", "rtk_bad", env=env)
    assert bad_key.returncode == 3 and bad_key.stderr.startswith("error 401001: ")

    missing = retouch("edit", "x", str(tmp_path / "nope.png"), env=env)
    assert missing.returncode == 2 and "nope.png" in missing.stderr
    assert missing.stderr.startswith("error ")

    invalid = retouch("edit", "x", square, "--num-images", "9", "--json", env=env)
    assert invalid.returncode == 2 and invalid.stderr.startswith("error 422001: ")
    assert "num_images:" in invalid.stderr
    assert json.loads(invalid.stdout)["error"]["code"] == "422001"

    assert retouch("edit", "x", square, "--seed", "seven", env=env).returncode == 2
    for command in ("status", "result", "cancel", "wait"):
        unknown = retouch(command, "no-such-request", env=env)
        assert unknown.returncode == 4, (command, unknown.stderr)
        assert unknown.stderr.startswith("error 404001: ")

    failed = retouch("edit", "x", image_server.url("/missing.png"), "--no-progress", env=env)
    assert failed.returncode == 1 and re.search(
        r"^error \w+: request \S+ failed", failed.stderr, re.M
    )

    unreachable = dict(env, RETOUCH_URL="http://127.0.0.1:9")
    assert retouch("status", "abc", env=unreachable).returncode == 7


def test_cancel_then_wait_exits_5(env: dict[str, str], api: Api, image_server: ImageServer) -> None:
    occupy_worker(api, image_server)
    queued = api.submit_ok(
        {"prompt": "x", "image_urls": [image_server.url("/square.png")], **SMALL}
    )
    cancelled = retouch("cancel", queued, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["outcome"] == "cancelled"
    # Repeating a cancel is harmless.
    again = retouch("cancel", queued, env=env)
    assert again.returncode == 0, again.stderr
    assert retouch("wait", queued, env=env).returncode == 5
    result = retouch("result", queued, env=env)
    assert result.returncode == 5 and json.loads(result.stdout)["status"] == "cancelled"


def test_timeout_exits_6_and_wait_resumes(
    env: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    slow = image_server.url("/slow.png?seconds=2")
    timed_out = retouch(
        "edit", "x", slow, "--resolution", "0.5K", "--timeout", "0.3", "--json", env=env
    )
    assert timed_out.returncode == 6, timed_out.stderr
    request_id = submitted_id(timed_out.stderr)
    # Shell commands only: not the SDK's `client.wait(…)`.
    assert re.fullmatch(
        rf"error timeout: request {request_id} has not finished after 0\.3 s"
        rf"( \(still (in_queue|in_progress)\))?; it goes on: resume with "
        rf"`retouch wait {request_id}`",
        timed_out.stderr.splitlines()[-1],
    ), timed_out.stderr
    assert "client.wait" not in timed_out.stderr
    error = json.loads(timed_out.stdout)["error"]
    assert error["code"] == "timeout" and error["message"] in timed_out.stderr

    status = retouch("status", request_id, env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["request_id"] == request_id

    resumed = retouch("wait", request_id, "-o", str(tmp_path), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [str(tmp_path / f"{request_id}-0.png")]

    saved = retouch("result", request_id, "-o", str(tmp_path / "again"), "--json", env=env)
    assert saved.returncode == 0 and len(json.loads(saved.stdout)["files"]) == 1


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_exits_130_and_the_job_can_be_resumed(
    env: dict[str, str], api: Api, image_server: ImageServer
) -> None:
    slow = image_server.url("/slow.png?seconds=2")
    process = subprocess.Popen(
        [sys.executable, "-m", "retouch", "edit", "x", slow, "--resolution", "0.5K"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a shell starts it: SIGINT neither ignored nor blocked, which a child inherits
        # from its parent (a test process may have either from what ran in it before).
        preexec_fn=default_sigint,
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the request id, printed once it is submitted
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert api.wait(submitted_id(first))["status"] == "succeeded"


def test_upload_requests_and_webhook_secret(
    env: dict[str, str], tmp_path: Path, image_server: ImageServer
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_image(64, 48, "JPEG"))
    uploaded = retouch("upload", str(photo), "--json", env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["width"] == 64

    listed = retouch("requests", "--limit", "2", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["requests"]) <= 2
    # 0 is sent (not dropped for the default), and the server refuses it.
    zero = retouch("requests", "--limit", "0", env=env)
    assert zero.returncode == 2 and zero.stderr.startswith("error 422001: "), zero.stderr
    assert "limit:" in zero.stderr and not zero.stdout

    secret = retouch("webhook-secret", env=env)
    assert secret.returncode == 0 and secret.stdout.startswith("whsec_")


def test_url_and_key_from_the_config_file_env_and_flags(
    server: RetouchProcess, api: Api, tmp_path: Path
) -> None:
    config = tmp_path / "client.toml"
    config.write_text(f'url = "{server.base}"\napi_key = "{api.key}"\n')
    request_id = api.submit_ok({"prompt": "x", "image_urls": ["https://example.com/x.png"]})

    from_file = client_env(tmp_path, RETOUCH_CLIENT_CONFIG=str(config))
    assert retouch("status", request_id, env=from_file).returncode == 0

    xdg = tmp_path / "config" / "retouch" / "client.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(config.read_text())
    assert retouch("status", request_id, env=client_env(tmp_path)).returncode == 0

    # The environment beats the file, a flag beats the environment.
    env_key = client_env(tmp_path, RETOUCH_API_KEY="rtk_bad")
    assert retouch("status", request_id, env=env_key).returncode == 3
    flag_key = retouch("status", request_id, "--api-key", api.key, env=env_key)
    assert flag_key.returncode == 0

    nothing = client_env(tmp_path / "empty", RETOUCH_URL=server.base)
    missing = retouch("status", request_id, env=nothing)
    assert missing.returncode == 3
    for way in ("--api-key", "RETOUCH_API_KEY", "client.toml"):
        assert way in missing.stderr


def test_keys_a_header_cannot_carry_are_refused_without_a_traceback(tmp_path: Path) -> None:
    # Refused before anything is sent: no server needed.
    env = client_env(tmp_path, RETOUCH_URL="http://127.0.0.1:9", RETOUCH_API_KEY="rtk_x")
    for key in ("é", "trailing "):
        bad = retouch("edit", "x", "https://example.com/a.png", "--idempotency-key", key, env=env)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.startswith("error 422001: ") and "Idempotency-Key" in bad.stderr
        assert "Traceback" not in bad.stderr

    for where in (["--api-key", "rtk_é"], []):
        key_env = env if where else dict(env, RETOUCH_API_KEY="rtk_a b")
        bad_key = retouch("status", "abc", *where, env=key_env)
        assert bad_key.returncode == 3, bad_key.stderr
        assert bad_key.stderr.startswith("error bad_api_key: ")
        assert "Traceback" not in bad_key.stderr
        assert "rtk_é" not in bad_key.stderr and "rtk_a b" not in bad_key.stderr


def test_cancel_of_a_job_already_cancelled_exits_0(tmp_path: Path) -> None:
    def answer(status: str) -> tuple[int, dict[str, str], dict[str, str]]:
        return 202, {"request_id": "r1", "status": status, "outcome": "not_cancellable"}, {}

    routes = {
        ("POST", "/v1/requests/cancelled/cancel"): answer("cancelled"),
        ("POST", "/v1/requests/running/cancel"): answer("in_progress"),
    }
    with ScriptedServer(routes) as server:
        env = client_env(tmp_path, RETOUCH_URL=server.base, RETOUCH_API_KEY="rtk_x")
        again = retouch("cancel", "cancelled", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"] == "cancelled"
        running = retouch("cancel", "running", env=env)
        assert running.returncode == 8 and running.stderr.startswith("error not_cancellable: ")


def test_unexpected_errors_exit_7_without_a_traceback(tmp_path: Path) -> None:
    # A body httpx cannot decode: the SDK's ConnectionError. An output URL whose host no
    # IDNA codec takes: an error nothing maps, left to the last-resort handler.
    bad_url = {
        "request_id": "r1",
        "status": "succeeded",
        "output": {"images": ["http://a..b/x.png"]},
    }
    routes = {
        ("GET", "/v1/requests/r1/status"): (200, {"x": 1}, {"Content-Encoding": "gzip"}),
        ("GET", "/v1/requests/r1/result"): (200, bad_url, {}),
    }
    with ScriptedServer(routes) as server:
        env = client_env(tmp_path, RETOUCH_URL=server.base, RETOUCH_API_KEY="rtk_x")
        garbled = retouch("status", "r1", env=env)
        assert garbled.returncode == 7, garbled.stderr
        assert garbled.stderr.startswith("error connection: ") and "DecodingError" in garbled.stderr
        assert len(server.paths("/status")) == 1  # not retried

        unexpected = retouch("result", "r1", "-o", str(tmp_path / "out"), "--json", env=env)
    assert unexpected.returncode == 7, unexpected.stderr
    assert unexpected.stderr.startswith("error: ") and "Traceback" not in unexpected.stderr
    assert json.loads(unexpected.stdout)["error"]["code"] == "internal"


def test_the_jobs_warnings_go_to_stderr_and_into_the_json(
    env: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    done = retouch(
        "edit", "x", image_server.url("/square.png"), *SMALL_FLAGS, "--json", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    # The preview engine (the e2e server's) says its outputs are not real edits.
    assert any(warning.startswith("preview model:") for warning in body["warnings"]), body
    assert body["warnings"] == body["result"]["warnings"]
    shown = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert shown == [f"warning: {warning}" for warning in body["warnings"]]

    request_id = body["request_id"]
    waited = retouch("wait", request_id, "-o", str(tmp_path / "waited"), env=env)
    saved = retouch("result", request_id, "-o", str(tmp_path / "saved"), "--json", env=env)
    for again in (waited, saved):
        assert again.returncode == 0, again.stderr
        assert [line for line in again.stderr.splitlines() if line.startswith("warning: ")] == shown
    assert json.loads(saved.stdout)["warnings"] == body["warnings"]


def unsigned(body: bytes) -> bytes:
    """`body` with its output URLs' signatures blanked: each fetch signs them anew (their
    expiry is counted from the fetch)."""
    return re.sub(rb"expires=\d+&sig=[^\"&]+", b"expires=E&sig=S", body)


def cli_bytes(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "retouch", *args], capture_output=True, env=env, timeout=60
    )


def test_status_and_result_print_the_servers_body_as_sent(
    env: dict[str, str], api: Api, image_server: ImageServer
) -> None:
    done = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")], **SMALL})
    failed = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/missing.png")]})
    api.wait(done)
    api.wait(failed)
    for request_id, exit_code in ((done, 0), (failed, 1)):
        for view in ("status", "result"):
            printed = cli_bytes(view, request_id, env=env)
            served = httpx.get(
                f"{api.base}/v1/requests/{request_id}/{view}", headers=api.headers, timeout=30
            ).content
            assert printed.returncode == (exit_code if view == "result" else 0), printed.stderr
            if request_id == failed:  # no signed URL: the very bytes
                assert printed.stdout == served
            assert unsigned(printed.stdout) == unsigned(served)

            pretty = cli_bytes(view, request_id, "--pretty", env=env)
            indented = json.dumps(json.loads(served), indent=2, ensure_ascii=False) + "\n"
            assert unsigned(pretty.stdout) == unsigned(indented.encode())
            assert list(json.loads(pretty.stdout)) == list(json.loads(served))  # key order
    # The timestamps as the server wrote them, not as the SDK's models would.
    assert b'"created_at":' in printed.stdout
