"""A client generated from the live server's /openapi.json (openapi-python-client) drives the
contract and gets its own typed models back: the document describes what the API answers."""

from __future__ import annotations

import enum
import importlib
import json
import re
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from openapi_python_client.strings import PythonIdentifier
from PIL import Image

from e2e_support import Api, ImageServer

# On SQLite only: a generated client speaks HTTP: the job store plays no part.
pytestmark = pytest.mark.sqlite_only

PACKAGE = "retouch_generated_client"
ENDPOINT = "google/nano-banana-2/edit"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
FIELD_PREFIX = "field_"
GENERATOR_CONFIG: dict[str, Any] = {
    # The generator's default post-hooks run ruff over its output: nothing is needed here.
    "post_hooks": [],
    "field_prefix": FIELD_PREFIX,
    # It reads binary bodies only as application/octet-stream (a `File`); ours are images.
    "content_type_overrides": {
        media: "application/octet-stream" for media in ("image/png", "image/jpeg", "image/webp")
    },
}
DONE = {"completed", "cancelled"}


@dataclass
class Generated:
    package: ModuleType
    document: dict[str, Any]
    output: str  # what the generator printed (its warnings)

    def operation(self, method: str, matches: Callable[[str], bool]) -> tuple[str, ModuleType]:
        """The path template and the generated module of the one operation whose path
        `matches`."""
        found = [
            (path, item[method]["operationId"])
            for path, item in self.document["paths"].items()
            if method in item and matches(path)
        ]
        assert len(found) == 1, f"{method.upper()}: expected one operation, found {found}"
        path, operation_id = found[0]
        name = PythonIdentifier(operation_id, FIELD_PREFIX)
        root = Path(self.package.__file__ or "").parent
        modules = sorted(root.glob(f"api/*/{name}.py"))
        assert len(modules) == 1, f"no generated module for {operation_id}: {modules}"
        tag = modules[0].parent.name
        return path, importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")

    def client(self, api: Api) -> Any:
        client_module = importlib.import_module(f"{PACKAGE}.client")
        return client_module.AuthenticatedClient(base_url=api.base, token=api.key, timeout=30.0)


@pytest.fixture(scope="module")
def generated(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    root = tmp_path_factory.mktemp("generated-client")
    document = httpx.get(f"{api.base}/openapi.json", timeout=30).raise_for_status().json()
    (root / "openapi.json").write_text(json.dumps(document))
    (root / "config.json").write_text(json.dumps(GENERATOR_CONFIG))
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(root / "openapi.json"),
            "--config",
            str(root / "config.json"),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    sys.path.insert(0, str(root))
    try:
        yield Generated(importlib.import_module(PACKAGE), document, output)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def path_arguments(template: str, path: str) -> dict[str, str]:
    """The generated function's path arguments: "/v1/requests/{request_id}/status" against a
    real path gives {"request_id": …}, under the generator's Python names."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+?)", re.escape(template))
    match = re.fullmatch(pattern, path)
    assert match is not None, f"{path} does not match {template}"
    return {
        PythonIdentifier(name, FIELD_PREFIX): value for name, value in match.groupdict().items()
    }


def is_model(value: object) -> bool:
    """An instance of one of the generated model classes (not a dict, not None)."""
    return type(value).__module__.startswith(f"{PACKAGE}.models.")


def plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def assert_model(response: Any, status: int) -> Any:
    assert response.status_code == status, response.content
    assert is_model(response.parsed), (
        f"status {status} parsed as {type(response.parsed).__name__}, not a generated model: "
        f"{response.parsed!r}"
    )
    return response.parsed


def body_class(module: ModuleType) -> Any:
    hint = typing.get_type_hints(module.sync_detailed)["body"]
    assert isinstance(hint, type), f"the body is {hint}, not one model class"
    return hint


def test_the_generator_has_no_warnings(generated: Generated) -> None:
    assert "Warning" not in generated.output, generated.output


def test_submit_status_result_cancel_through_the_generated_client(
    generated: Generated, api: Api, image_server: ImageServer
) -> None:
    client = generated.client(api)
    submit_path, submit = generated.operation("post", lambda p: p.startswith("/v1/models/"))
    status_path, status = generated.operation("get", lambda p: p.endswith("/status"))
    result_path, result = generated.operation("get", lambda p: p.endswith("/result"))
    cancel_path, cancel = generated.operation("post", lambda p: p.endswith("/cancel"))
    file_path, download = generated.operation("get", lambda p: p.startswith("/v1/files/"))

    body = body_class(submit).from_dict(
        {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
    )
    submitted = assert_model(
        submit.sync_detailed(
            client=client, body=body, **path_arguments(submit_path, f"/v1/models/{ENDPOINT}")
        ),
        200,
    )
    request_id = str(submitted.request_id)
    assert str(submitted.status_url).endswith(f"/v1/requests/{request_id}/status")
    by_id = f"/v1/requests/{request_id}"

    deadline = time.monotonic() + 120
    while True:
        polled = assert_model(
            status.sync_detailed(client=client, **path_arguments(status_path, f"{by_id}/status")),
            200,
        )
        assert str(polled.request_id) == request_id
        if plain(polled.status) in DONE or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert plain(polled.status) == "completed"

    finished = assert_model(
        result.sync_detailed(client=client, **path_arguments(result_path, f"{by_id}/result")),
        200,
    )
    assert plain(finished.status) == "succeeded"
    assert is_model(finished.output), f"output parsed as {type(finished.output).__name__}"
    assert len(finished.output.images) == 1
    assert is_model(finished.model), f"model parsed as {type(finished.model).__name__}"

    # The signed output URL, fetched through the generated files operation: a File of image bytes.
    url = urlsplit(str(finished.output.images[0]))
    query = {PythonIdentifier(k, FIELD_PREFIX): v for k, v in parse_qsl(url.query)}
    fetched = download.sync_detailed(client=client, **path_arguments(file_path, url.path), **query)
    assert fetched.status_code == 200, fetched.content
    file_type = importlib.import_module(f"{PACKAGE}.types").File
    assert isinstance(fetched.parsed, file_type), type(fetched.parsed).__name__
    assert Image.open(fetched.parsed.payload).size == (512, 512)

    cancelled = assert_model(
        cancel.sync_detailed(client=client, **path_arguments(cancel_path, f"{by_id}/cancel")),
        202,
    )
    assert str(cancelled.request_id) == request_id
    assert plain(cancelled.outcome) == "not_cancellable"
    assert plain(cancelled.status) == "completed"


def test_an_invalid_input_is_a_typed_422(generated: Generated, api: Api) -> None:
    client = generated.client(api)
    submit_path, submit = generated.operation("post", lambda p: p.startswith("/v1/models/"))
    body = body_class(submit).from_dict(
        {"prompt": "x", "image_urls": ["https://example.com/a.png"], "num_images": 99}
    )
    error = assert_model(
        submit.sync_detailed(
            client=client, body=body, **path_arguments(submit_path, f"/v1/models/{ENDPOINT}")
        ),
        422,
    )
    assert error.error_code == 422001
    assert "num_images" in error.error_message
    assert isinstance(error.detail, list) and error.detail, error.detail
    item = error.detail[0]
    assert is_model(item), f"detail items parsed as {type(item).__name__}"
    assert item.field == "num_images"
    assert list(item.path) == ["num_images"]
    assert isinstance(item.message, str) and item.message
